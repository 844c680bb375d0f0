"""A batch with deletes reads the stored versions of its keys only: the files that hold them, not the whole table
(issue 29). Files and rows read are Spark's scan metrics of the lookup's own query."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from helpers import job_config, read_table

from streaming.lakehouse import hudi
from streaming.pipeline import job

pytestmark = pytest.mark.spark

HOSPITALS = ("Alpha", "Beta", "Gamma", "Delta")
PER_HOSPITAL = 5


def _encounter(eid: str, hospital: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "meta": {"lastUpdated": "2024-05-01T00:00:00Z"},
        "status": "finished",
        "serviceProvider": {"display": hospital},
    }


def _scanned(df: Any) -> tuple[int, int]:
    """(files, rows) the scans of `df`'s last executed query read (AQE's final plan when it ran adaptively)."""
    files = rows = 0
    stack = [df._jdf.queryExecution().executedPlan()]
    while stack:
        node = stack.pop()
        if node.getClass().getSimpleName() == "AdaptiveSparkPlanExec":
            stack.append(node.executedPlan())
            continue
        metrics = node.metrics()
        if metrics.contains("numFiles"):
            files += metrics.apply("numFiles").value()
            rows += metrics.apply("numOutputRows").value()
        children = node.children()
        stack += [children.apply(i) for i in range(children.size())]
    return files, rows


class _Recording(hudi.HudiWriter):
    """The job's writer; each key lookup is also run at once (before the batch writes): its keys, files and rows."""

    lookups: ClassVar[list[tuple[list[str], tuple[int, int]]]] = []  # set empty by each test (monkeypatch)

    def read_keys(self, spec: hudi.TableSpec, keys: Any) -> Any:
        found = super().read_keys(spec, keys)
        copy = found.select("encounter_id")
        self.lookups.append((sorted(r["encounter_id"] for r in copy.collect()), _scanned(copy)))
        return found


def test_a_delete_batch_reads_only_the_file_holding_its_key(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    encounters = [_encounter(f"{h.lower()}-{i}", h) for h in HOSPITALS for i in range(PER_HOSPITAL)]
    (landing / "all.ndjson").write_text("".join(json.dumps(e) + "\n" for e in encounters))
    config = job_config(tmp_path, landing)
    job.run(config, once=True, spark=spark)  # a bulk insert: one file per hospital
    spec = hudi.encounter_table(config)
    writer = hudi.HudiWriter(spark)

    # Before: the whole table read (what a delete batch read until issue 29) opens every hospital's file.
    whole = writer.read(spec).select("encounter_id", "precombine_ts", "is_deleted")
    assert len(whole.collect()) == len(encounters)
    assert _scanned(whole) == (len(HOSPITALS), len(encounters))

    # A DELETE without an event time of one Beta encounter: it needs that key's stored version, nothing else.
    delete = {"request": {"method": "DELETE", "url": "Encounter/beta-2"}}
    (landing / "delete.json").write_text(json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [delete]}))
    monkeypatch.setattr(job, "HudiWriter", _Recording)
    monkeypatch.setattr(_Recording, "lookups", [])
    job.run(config, once=True, spark=spark)

    # One lookup, of that key, which read Beta's file (its rows) and no other.
    assert _Recording.lookups == [(["beta-2"], (1, PER_HOSPITAL))]
    rows = {r["encounter_id"]: r for r in read_table(spark, spec.uri)}
    assert {k for k, r in rows.items() if r["is_deleted"]} == {"beta-2"}
    assert rows["beta-2"]["_hoodie_partition_path"] == "hospital_partition=__deleted__"
    assert len(rows) == len(encounters)
