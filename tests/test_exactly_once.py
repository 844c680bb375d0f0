"""Ordering, partition moves, deletes and the single-writer lease, on real Spark + Hudi (in-process job runs)."""

from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import files_scanned, job_config, read_table
from pyspark.sql.readwriter import DataFrameReader

from streaming.lakehouse.hudi import HudiWriter
from streaming.ledger import LeaseHeld, SqliteLedger
from streaming.ledger.lease import lease_name
from streaming.pipeline import job
from streaming.pipeline.batch import BatchResult

pytestmark = pytest.mark.spark

BUSINESS = ("encounter_id", "status", "hospital_name", "last_updated", "admission_time", "discharge_time")


def _encounter(eid: str, *, updated: str, hospital: str, status: str = "finished") -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "meta": {"lastUpdated": updated},
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/p-{eid}"},
        "period": {"start": "2024-01-01T10:00:00Z", "end": "2024-01-01T11:00:00Z"},
        "serviceProvider": {"reference": "Organization/o1", "display": hospital},
    }


def _land(landing: Path, name: str, resources: list[dict[str, Any]], mtime: float | None = None) -> Path:
    """Write an NDJSON file; `mtime` pins the file time (the ordering fallback) to keep tests deterministic."""
    landing.mkdir(parents=True, exist_ok=True)
    path = landing / name
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def _delete_bundle(landing: Path, name: str, ids: list[str]) -> Path:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": f"Encounter/{i}"}} for i in ids],
    }
    path = landing / name
    path.write_text(json.dumps(bundle, indent=2))
    return path


def _rows(spark: Any, uri: str) -> dict[str, dict[str, Any]]:
    rows = read_table(spark, uri)
    ids = [r["encounter_id"] for r in rows]
    assert len(ids) == len(set(ids)), f"duplicate keys: {sorted(i for i in ids if ids.count(i) > 1)}"
    return {r["encounter_id"]: r for r in rows}


def test_newest_version_wins_and_late_older_versions_do_not(spark: Any, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    config = job_config(tmp_path, landing)
    table = config.table_uri("bronze_encounter")
    _land(
        landing,
        "a.ndjson",
        [
            _encounter("e1", updated="2024-05-02T00:00:00Z", hospital="Alpha", status="finished"),
            _encounter("e2", updated="2024-05-01T00:00:00Z", hospital="Alpha", status="in-progress"),
        ],
    )
    job.run(config, once=True, spark=spark)

    # A later file: a newer e2 (wins), an older e1 (late: must not win), in the same batch as a new e3.
    _land(
        landing,
        "b.ndjson",
        [
            _encounter("e1", updated="2024-05-01T00:00:00Z", hospital="Alpha", status="in-progress"),
            _encounter("e2", updated="2024-05-03T00:00:00Z", hospital="Alpha", status="finished"),
            _encounter("e3", updated="2024-05-01T00:00:00Z", hospital="Beta"),
        ],
    )
    job.run(config, once=True, spark=spark)
    rows = _rows(spark, table)

    assert {k: (r["status"], r["last_updated"].isoformat()) for k, r in rows.items()} == {
        "e1": ("finished", "2024-05-02T00:00:00"),
        "e2": ("finished", "2024-05-03T00:00:00"),
        "e3": ("finished", "2024-05-01T00:00:00"),
    }
    assert rows["e1"]["sourcename"].endswith("/a.ndjson")

    # A forced replay of one old file, b.ndjson (ledger and checkpoint wiped, as a manual backfill would; a.ndjson
    # moved away). Its e1 is older than the stored one: it must not replace it (the row keeps its commit). Its e2
    # and e3 are the stored versions: equal values, so the one ingested later wins (ordering rule), the same
    # content in a new commit. No business column changes.
    before = {k: tuple(r[c] for c in BUSINESS) for k, r in rows.items()}
    commits = {k: r["_hoodie_commit_time"] for k, r in rows.items()}
    for suffix in ("", "-wal", "-shm"):
        Path(config.ledger_path + suffix).unlink(missing_ok=True)
    shutil.rmtree(config.checkpoint_uri)
    (landing / "a.ndjson").rename(tmp_path / "a.ndjson")
    (replay,) = job.run(config, once=True, spark=spark).batches
    assert [Path(f).name for f in replay.files] == ["b.ndjson"]
    after = _rows(spark, table)
    assert {k: tuple(r[c] for c in BUSINESS) for k, r in after.items()} == before
    replayed = {k for k, r in after.items() if r["_hoodie_commit_time"] != commits[k]}
    assert replayed == {"e2", "e3"}, "the older e1 replaced the stored one, or an equal version did not"


def test_hospital_change_moves_the_row_and_an_older_move_does_not(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = tmp_path / "landing"
    config = job_config(tmp_path, landing)
    table = config.table_uri("bronze_encounter")
    # Per batch: (rows_written, rows_stale) and whether the files the commit wrote were read to count the stale.
    counted: list[tuple[int, int | None, bool]] = []
    reads: list[str] = []
    real_parquet = DataFrameReader.parquet

    def parquet(self: DataFrameReader, *paths: str, **options: Any) -> Any:
        reads.extend(paths)
        return real_parquet(self, *paths, **options)

    monkeypatch.setattr(DataFrameReader, "parquet", parquet)

    def batch(r: BatchResult) -> None:
        counted.append((r.stats.rows_written, r.stats.rows_stale, any(p.startswith(table) for p in reads)))
        reads.clear()

    def run() -> None:
        job.run(config, once=True, spark=spark, on_batch=batch)

    _land(landing, "1.ndjson", [_encounter("m1", updated="2024-01-01T00:00:00Z", hospital="Old Hospital")])
    run()
    _land(landing, "2.ndjson", [_encounter("m1", updated="2024-02-01T00:00:00Z", hospital="New Hospital")])
    _land(landing, "2b.ndjson", [_encounter("n1", updated="2024-02-01T00:00:00Z", hospital="Old Hospital")])
    run()
    rows = _rows(spark, table)
    assert rows["m1"]["hospital_name"] == "New Hospital"
    assert rows["m1"]["_hoodie_partition_path"] == "hospital_partition=New Hospital"

    # A late, older version from a third hospital must neither win nor leave a second copy behind.
    _land(landing, "3.ndjson", [_encounter("m1", updated="2023-12-01T00:00:00Z", hospital="Third Hospital")])
    run()
    rows = _rows(spark, table)
    assert (rows["m1"]["hospital_name"], rows["m1"]["_hoodie_partition_path"]) == (
        "New Hospital",
        "hospital_partition=New Hospital",
    )
    assert len(rows) == 2
    # Counted as users read it: the move and the new encounter written, the late move stale (not written). Hudi's
    # commit counts the move and the new one as inserts, so nothing is read for them; the late move it merges
    # into the stored row, which it writes again: the stale count is read from the files then.
    assert counted == [(1, 0, False), (2, 0, False), (0, 1, True)]


def test_bundle_delete_removes_the_encounter_idempotently(spark: Any, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    config = job_config(tmp_path, landing)
    table = config.table_uri("bronze_encounter")
    _land(
        landing,
        "in.ndjson",
        [
            _encounter("d1", updated="2024-01-01T00:00:00Z", hospital="Alpha"),
            _encounter("d2", updated="2024-01-01T00:00:00Z", hospital="Beta"),
        ],
    )
    job.run(config, once=True, spark=spark)

    _delete_bundle(landing, "delete-1.json", ["d1", "never-seen"])
    summary = job.run(config, once=True, spark=spark)
    # Two requests; one encounter left the table (never-seen was not there): both keys keep a tombstone.
    assert [(b.stats.rows_deleted, b.stats.delete_requests) for b in summary.batches] == [(1, 2)]
    assert _live(spark, table) == {"d2"}
    assert {k for k, r in _rows(spark, table).items() if r["is_deleted"]} == {"d1", "never-seen"}

    _delete_bundle(landing, "delete-2.json", ["d1"])  # the same delete again: nothing changes, nothing fails
    job.run(config, once=True, spark=spark)
    assert _live(spark, table) == {"d2"}
    # The Bundles carry no time: the delete took d1's ordering, so a version older than that, arriving after the
    # delete, stays deleted.
    _land(landing, "late.ndjson", [_encounter("d1", updated="2023-12-01T00:00:00Z", hospital="Alpha")])
    job.run(config, once=True, spark=spark)
    assert _live(spark, table) == {"d2"}
    log = read_table(spark, config.table_uri("bronze_encounter_ingest_log"))
    assert sorted((r["rows_deleted"], r["delete_requests"]) for r in log) == [(0, 0), (0, 0), (0, 1), (1, 2)]


def test_a_delete_reads_only_the_files_that_hold_its_keys(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch with deletes looks its keys up in the record index: it never reads the table, only the file of the
    encounter it deletes (a key the table never held reads nothing), and that once for all it does with them."""
    from pyspark.sql import functions as F

    landing = tmp_path / "landing"
    config = job_config(tmp_path, landing)
    table = config.table_uri("bronze_encounter")
    hospitals = [f"Hospital {n}" for n in range(6)]  # one file each
    _land(landing, "in.ndjson", [_encounter(f"k{n}", updated="2024-01-01T00:00:00Z", hospital=h)
                                 for n, h in enumerate(hospitals)])  # fmt: skip
    job.run(config, once=True, spark=spark)
    files, _ = files_scanned(spark.read.format("hudi").load(table))
    assert files == len(hospitals)

    lookups: list[Any] = []
    real_read_keys = HudiWriter.read_keys
    produced = spark.sparkContext.accumulator(0)  # stored rows the batch's reads produced, every evaluation counted

    def count(_: Any) -> bool:
        produced.add(1)
        return True

    def read_keys(self: HudiWriter, spec: Any, keys: Any) -> Any:
        lookups.append(found := real_read_keys(self, spec, keys))
        return found.where(F.udf(count, "boolean")(F.col("encounter_id")))

    def read(self: HudiWriter, spec: Any) -> Any:
        raise AssertionError(f"a batch read all of {spec.name}")

    monkeypatch.setattr(HudiWriter, "read_keys", read_keys)
    monkeypatch.setattr(HudiWriter, "read", read)
    _delete_bundle(landing, "delete.json", ["k3", "never-seen"])
    summary = job.run(config, once=True, spark=spark)
    monkeypatch.undo()

    assert [(b.stats.rows_deleted, b.stats.delete_requests) for b in summary.batches] == [(1, 2)]
    assert _live(spark, table) == {f"k{n}" for n in range(6)} - {"k3"}
    assert len(lookups) == 1
    assert produced.value == 1  # k3's stored version, read once (9 times when it was not kept between its uses)
    files, rows = files_scanned(lookups[0])
    assert (files, sorted(r["encounter_id"] for r in rows)) == (1, ["k3"])


def _live(spark: Any, table: str) -> set[str]:
    """Encounter ids that are not tombstones."""
    return {k for k, r in _rows(spark, table).items() if not r["is_deleted"]}


def test_second_writer_is_refused_while_the_lease_is_live(spark: Any, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    config = job_config(tmp_path, landing, lease_wait_seconds="1")
    ledger = SqliteLedger(config.ledger_path)
    name = lease_name(config)
    ledger.acquire_lease(name, "other-instance", timedelta(minutes=5))
    try:
        with pytest.raises(LeaseHeld, match="other-instance"):
            job.run(config, once=True, spark=spark)
        assert not Path(config.table_uri("bronze_encounter")).exists()
    finally:
        ledger.release_lease(name, "other-instance")
        ledger.close()
    job.run(config, once=True, spark=spark)  # once released, the job starts


def test_a_table_written_before_tombstones_takes_deletes(spark: Any, tmp_path: Path) -> None:
    """A bronze table of an earlier release has no is_deleted column: its rows are all live, a DELETE tombstones one
    (the column is added by the write, as Hudi refuses a write that drops one), the others stay."""
    from streaming.lakehouse.hudi import HudiWriter, encounter_table

    first = job_config(tmp_path / "first", tmp_path / "first" / "landing")
    _land(
        Path(first.source),
        "a.ndjson",
        [_encounter(e, updated="2024-05-01T00:00:00Z", hospital="Alpha") for e in ("e1", "e2")],
    )
    job.run(first, once=True, spark=spark)
    written = spark.read.format("hudi").load(first.table_uri("bronze_encounter"))
    old = written.drop("is_deleted", *[c for c in written.columns if c.startswith("_hoodie_")])
    assert "is_deleted" not in old.columns

    landing = tmp_path / "landing"
    landing.mkdir()
    config = job_config(tmp_path, landing)
    HudiWriter(spark).upsert(encounter_table(config), old, {})  # the earlier release's table
    _delete_bundle(landing, "delete.json", ["e1"])
    job.run(config, once=True, spark=spark)

    rows = _rows(spark, config.table_uri("bronze_encounter"))
    assert {eid: bool(r["is_deleted"]) for eid, r in rows.items()} == {"e1": True, "e2": False}
