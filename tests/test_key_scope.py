"""Two systems' ids do not overwrite each other when the key says they are different (config.key_scope)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import job_config, read_table

from streaming import cli
from streaming.pipeline import job

pytestmark = pytest.mark.spark


def _encounter(eid: str, hospital: str, source: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Encounter", "id": eid, "status": "finished"}
    resource["serviceProvider"] = {"display": hospital}
    resource["meta"] = {"lastUpdated": "2024-01-01T00:00:00Z", **({"source": source} if source else {})}
    return resource


def _land(path: Path, *resources: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))


def _rows(spark: Any, config: Any) -> set[tuple[Any, ...]]:
    rows = read_table(spark, config.table_uri("bronze_encounter"))
    return {(r["source_system"], r["encounter_id"], r["hospital_name"], r["is_deleted"]) for r in rows}


def test_the_first_folder_keeps_two_systems_that_number_alike_apart(spark: Any, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    _land(landing / "ehr-a" / "2024" / "a.ndjson", _encounter("123", "Hospital A"))
    _land(landing / "ehr-b" / "b.ndjson", _encounter("123", "Hospital B"))
    _land(landing / "top.ndjson", _encounter("123", "Hospital C"))  # directly in the prefix: no folder

    scoped = job_config(tmp_path / "scoped", landing, key_scope="folder")
    job.run(scoped, once=True, spark=spark)
    assert _rows(spark, scoped) == {
        ("ehr-a", "123", "Hospital A", False),
        ("ehr-b", "123", "Hospital B", False),
        ("", "123", "Hospital C", False),
    }

    # The default, the id alone: one encounter 123, the last file's (the schema's rule for one system).
    plain = job_config(tmp_path / "plain", landing)
    job.run(plain, once=True, spark=spark)
    assert len(_rows(spark, plain)) == 1 and {r[0] for r in _rows(spark, plain)} == {None}


def test_meta_source_scopes_versions_and_deletes(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landing = tmp_path / "landing"
    _land(landing / "1.ndjson", _encounter("7", "A", "https://ehr-a"), _encounter("7", "B", "https://ehr-b"))
    config = job_config(tmp_path, landing, key_scope="meta.source")
    job.run(config, once=True, spark=spark)
    assert _rows(spark, config) == {("https://ehr-a", "7", "A", False), ("https://ehr-b", "7", "B", False)}

    # A DELETE names its system through its Bundle's meta.source: only that system's encounter goes.
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "meta": {"source": "https://ehr-b"},
        "timestamp": "2024-02-01T00:00:00Z",
        "entry": [{"request": {"method": "DELETE", "url": "Encounter/7"}}],
    }
    (landing / "2.json").write_text(json.dumps(bundle))
    job.run(config, once=True, spark=spark)
    assert _rows(spark, config) == {("https://ehr-a", "7", "A", False), ("https://ehr-b", "7", None, True)}

    # The key of a table with data is fixed: another scope is refused at start, with one line and exit 2.
    argv = ["run", "--once", "--source", str(landing), "--warehouse", config.warehouse, "--set", "key_scope=id"]
    assert cli.main(argv) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is keyed by source_system,encounter_id" in err
