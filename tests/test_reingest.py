"""`reingest` and `replay-quarantine`: named files go through the exactly-once path again, under the writer lease."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import job_config, read_table

from streaming.ledger import LeaseHeld, open_ledger
from streaming.ledger.lease import lease_name
from streaming.pipeline import job, reingest


def _encounter(eid: str, status: str, updated: str, hospital: str = "General Hospital") -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "meta": {"lastUpdated": updated},
        "status": status,
        "class": {"code": "AMB"},
        "subject": {"reference": f"Patient/{eid}-p"},
        "period": {"start": "2024-01-01T08:00:00Z", "end": "2024-01-01T09:00:00Z"},
        "serviceProvider": {"display": hospital},
    }


def _write(path: Path, lines: list[Any], mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def _deep(eid: str, depth: int) -> dict[str, Any]:
    """A valid Encounter with an extension nested `depth` levels deep (real ones nest < 10)."""
    nested: dict[str, Any] = {"url": "x", "valueString": "leaf"}
    for _ in range(depth):
        nested = {"url": "x", "extension": [nested]}
    return {**_encounter(eid, "finished", "2024-02-01T00:00:00Z"), "extension": [nested]}


@pytest.mark.spark
def test_reingest_takes_a_corrected_file_the_stream_will_not_list_again(spark: Any, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    feed = _write(
        landing / "feed.ndjson",
        [_encounter("e1", "in-progress", "2024-01-01T09:00:00Z"), _encounter("e2", "finished", "2024-01-01T09:00:00Z")],
        mtime=1_700_000_000,
    )
    config = job_config(tmp_path, landing)
    job.run(config, once=True, spark=spark)

    # The sender corrects the file in place: same name, e1 finished, a newer version; e3 added.
    _write(
        feed,
        [
            _encounter("e1", "finished", "2024-01-02T09:00:00Z"),
            _encounter("e2", "finished", "2024-01-01T09:00:00Z"),
            _encounter("e3", "finished", "2024-01-02T09:00:00Z"),
        ],
        mtime=1_700_100_000,
    )
    again = job.run(config, once=True, spark=spark)
    assert again.files == 0  # neither the file source nor the ledger takes an overwritten file by itself
    bronze_uri = config.table_uri(config.tables.encounter)
    assert {r["encounter_id"]: r["status"] for r in read_table(spark, bronze_uri)} == {
        "e1": "in-progress",
        "e2": "finished",
    }

    summary = reingest.reingest(config, [str(feed)], spark=spark)

    uri = f"file:{feed}"
    assert [b.files for b in summary.batches] == [(uri,)]
    assert {r["encounter_id"]: r["status"] for r in read_table(spark, bronze_uri)} == {
        "e1": "finished",
        "e2": "finished",
        "e3": "finished",
    }
    log_rows = sorted(read_table(spark, config.table_uri(config.tables.ingest_log)), key=lambda r: r["started_at"])
    assert [(r["files"], r["rows_written"]) for r in log_rows] == [([uri], 2), ([uri], 3)]
    assert log_rows[1]["batch_key"].startswith("reingest-")
    ledger = open_ledger(config)
    try:
        assert ledger.committed([uri]) == {uri}
        assert ledger.open_intents() == []
    finally:
        ledger.close()
    # The ledger records the version it took: the corrected file's size and modification time.
    with sqlite3.connect(config.ledger_path) as db:
        (version,) = db.execute("SELECT version FROM files WHERE uri LIKE ?", (f"%|{uri}",)).fetchone()
    assert version == f"{feed.stat().st_size}@{datetime.fromtimestamp(1_700_100_000, UTC).isoformat()}"

    # An older copy taken again later does not win over the newer version (event-time ordering holds).
    _write(feed, [_encounter("e1", "in-progress", "2024-01-01T09:00:00Z")])
    reingest.reingest(config, [uri], spark=spark)
    assert {r["encounter_id"]: r["status"] for r in read_table(spark, bronze_uri)}["e1"] == "finished"


@pytest.mark.spark
def test_reingest_is_refused_while_another_writer_holds_the_lease(spark: Any, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    feed = _write(landing / "feed.ndjson", [_encounter("e1", "finished", "2024-01-01T09:00:00Z")])
    config = job_config(tmp_path, landing, lease_wait_seconds=0)
    ledger = open_ledger(config)
    try:
        ledger.acquire_lease(lease_name(config), "the-stream", timedelta(minutes=5))
        with pytest.raises(LeaseHeld):
            reingest.reingest(config, [str(feed)], spark=spark)
        assert ledger.committed([f"file:{feed}"]) == set()
    finally:
        ledger.close()


def test_reingest_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    config = job_config(tmp_path, tmp_path / "landing")
    with pytest.raises(reingest.ConfigError, match="cannot reingest"):
        reingest.reingest(config, [str(tmp_path / "nope.ndjson")])


@pytest.mark.spark
def test_replay_quarantine_takes_back_what_a_fix_makes_valid(spark: Any, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    deep = _write(
        landing / "deep.ndjson",
        [_encounter("ok1", "finished", "2024-01-01T09:00:00Z"), _deep("deep1", 12), _deep("deep2", 12), "{broken"],
    )
    broken = _write(landing / "broken.ndjson", [_encounter("ok2", "finished", "2024-01-01T09:00:00Z"), "{nope"])
    # A limit too strict for these files stands in for a mapping bug that a later release fixes.
    strict = job_config(tmp_path, landing, **{"fhir.max_depth": 8})
    job.run(strict, once=True, spark=spark)
    quarantine_uri = strict.table_uri(strict.tables.quarantine)
    before = {(r["sourcename"], r["source_position"], r["reason"]) for r in read_table(spark, quarantine_uri)}
    d, b = f"file:{deep}", f"file:{broken}"
    assert before == {
        (d, "line 2", "nesting_too_deep"),
        (d, "line 3", "nesting_too_deep"),
        (d, "line 4", "malformed_json"),
        (b, "line 2", "malformed_json"),
    }

    fixed = job_config(tmp_path, landing)  # the fix: default max_depth
    result = reingest.replay_quarantine(fixed, reason="nesting_too_deep", spark=spark)

    assert result.files == (d,)  # only files with a row of that reason
    # Only the positions quarantined for that reason are read again: line 1 (already in the table) and the malformed
    # line 4 (another reason) are left as they are.
    assert (result.rows_fixed, result.rows_still_quarantined) == (2, 0)
    after = {(r["sourcename"], r["source_position"], r["reason"]) for r in read_table(spark, quarantine_uri)}
    assert after == {(d, "line 4", "malformed_json"), (b, "line 2", "malformed_json")}
    bronze = read_table(spark, fixed.table_uri(fixed.tables.encounter))
    assert sorted(r["encounter_id"] for r in bronze) == ["deep1", "deep2", "ok1", "ok2"]
    log_rows = sorted(read_table(spark, fixed.table_uri(fixed.tables.ingest_log)), key=lambda r: r["started_at"])
    assert [(r["rows_written"], r["rows_rejected"]) for r in log_rows] == [(2, 4), (2, 0)]

    # Nothing left of that reason: a second replay takes no file and changes nothing.
    nothing = reingest.replay_quarantine(fixed, reason="nesting_too_deep", spark=spark)
    assert (nothing.files, nothing.rows_fixed) == ((), 0)
    assert len(read_table(spark, fixed.table_uri(fixed.tables.ingest_log))) == 2


def _strictly_quarantined(spark: Any, tmp_path: Path) -> tuple[Any, Path, Path]:
    """Two files whose bad lines a too strict limit (max_depth 8) quarantined: deep.ndjson (two too deep, one
    malformed) and broken.ndjson (one malformed). Returns the fixed config (default limit) and both files."""
    landing = tmp_path / "landing"
    deep = _write(
        landing / "deep.ndjson",
        [_encounter("ok1", "finished", "2024-01-01T09:00:00Z"), _deep("deep1", 12), _deep("deep2", 12), "{broken"],
    )
    broken = _write(landing / "broken.ndjson", [_encounter("ok2", "finished", "2024-01-01T09:00:00Z"), "{nope"])
    job.run(job_config(tmp_path, landing, **{"fhir.max_depth": 8}), once=True, spark=spark)
    return job_config(tmp_path, landing), deep, broken


def _quarantine(spark: Any, config: Any) -> set[tuple[str, str, str]]:
    rows = read_table(spark, config.table_uri(config.tables.quarantine))
    return {(Path(r["sourcename"]).name, r["source_position"], r["reason"]) for r in rows}


@pytest.mark.spark
def test_replay_quarantine_without_a_reason_takes_every_file_behind_a_quarantine_row(
    spark: Any, tmp_path: Path
) -> None:
    config, deep, broken = _strictly_quarantined(spark, tmp_path)

    result = reingest.replay_quarantine(config, spark=spark)

    assert result.files == (f"file:{broken}", f"file:{deep}")  # every reason: both files
    assert (result.rows_fixed, result.rows_still_quarantined) == (2, 2)
    assert _quarantine(spark, config) == {
        ("deep.ndjson", "line 4", "malformed_json"),
        ("broken.ndjson", "line 2", "malformed_json"),
    }
    (replay,) = result.summary.batches
    rows = read_table(spark, config.table_uri(config.tables.quarantine))
    assert {r["batch_key"] for r in rows} == {replay.batch_key}  # rows still bad carry the replay's batch key
    bronze = read_table(spark, config.table_uri(config.tables.encounter))
    assert sorted(r["encounter_id"] for r in bronze) == ["deep1", "deep2", "ok1", "ok2"]


@pytest.mark.spark
def test_replay_quarantine_is_refused_while_another_writer_holds_the_lease(spark: Any, tmp_path: Path) -> None:
    config, deep, _ = _strictly_quarantined(spark, tmp_path)
    before = _quarantine(spark, config)
    log_before = read_table(spark, config.table_uri(config.tables.ingest_log))
    ledger = open_ledger(config)
    try:
        ledger.acquire_lease(lease_name(config), "the-stream", timedelta(minutes=5))
        with pytest.raises(LeaseHeld, match="the-stream"):
            reingest.replay_quarantine(replace(config, lease_wait_seconds=0), spark=spark)
        assert ledger.open_intents() == []
    finally:
        ledger.close()
    assert _quarantine(spark, config) == before
    assert read_table(spark, config.table_uri(config.tables.ingest_log)) == log_before
    assert deep.exists()


@pytest.mark.spark
def test_replay_quarantine_of_a_vanished_file_records_it_unreadable_and_keeps_its_rows(
    spark: Any, tmp_path: Path
) -> None:
    """A file gone since its rows were quarantined (deleted, not archived) is read as unreadable_file, as the stream
    records a file gone before it was read; the rows it had stay, being all that is left of those records."""
    config, deep, _ = _strictly_quarantined(spark, tmp_path)
    before = _quarantine(spark, config)
    deep.unlink()

    result = reingest.replay_quarantine(config, reason="nesting_too_deep", spark=spark)

    assert result.files == (f"file:{deep}",)
    assert (result.rows_fixed, result.rows_still_quarantined) == (0, 4)  # deep.ndjson's three old rows and the new
    assert _quarantine(spark, config) == before | {("deep.ndjson", "file", "unreadable_file")}
    assert [b.stats.rows_rejected for b in result.summary.batches] == [1]
    bronze = read_table(spark, config.table_uri(config.tables.encounter))
    assert sorted(r["encounter_id"] for r in bronze) == ["ok1", "ok2"]
