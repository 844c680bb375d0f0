"""The ordering rule (streaming/bronze/ordering.py, docs/design.md): every case of its table, through the real job.

Each case gets its own encounter id. The first run lands every case's stored version, the second its incoming
one; the expected winner comes from the case, its expected row from the version that case says wins.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import job_config, read_table

from streaming.bronze.flatten import flatten
from streaming.bronze.ordering import CASES, DELETED_PARTITION, TOMBSTONE_STEP, Version, newest_versions
from streaming.bronze.records import RECORD_SCHEMA
from streaming.pipeline import job

BASE = datetime(2024, 1, 1, tzinfo=UTC)  # event time t
STORED_LANDED = datetime(2024, 3, 1, tzinfo=UTC)  # m: when the stored versions' files landed
INCOMING_LANDED = STORED_LANDED + timedelta(days=1)


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _landing_tier(landed: datetime) -> datetime:
    """The documented encoding of a landing time: 1970-01-01 plus its epoch milliseconds as microseconds."""
    return datetime(1970, 1, 1) + timedelta(microseconds=round(landed.timestamp() * 1000))


def _write(landing: Path, name: str, eid: str, version: Version, status: str, landed: datetime) -> Path:
    """One file holding one version: an NDJSON line, or a Bundle when the version's time is the Bundle's."""
    event = None if version.event is None else _iso(BASE + timedelta(days=version.event))
    resource: dict[str, Any] = {"resourceType": "Encounter", "id": eid, "status": status}
    resource["serviceProvider"] = {"display": f"Hospital {status}"}
    if version.source == "own" and event is not None:
        resource["meta"] = {"lastUpdated": event}
    if version.own_event is not None:
        resource["meta"] = {"lastUpdated": _iso(BASE + timedelta(days=version.own_event))}
    in_bundle = version.kind == "delete" or version.source != "own"
    path = landing / f"{name}.{'json' if in_bundle else 'ndjson'}"
    if in_bundle:
        entry: dict[str, Any] = (
            {"request": {"method": "DELETE", "url": f"Encounter/{eid}"}}
            if version.kind == "delete"
            else {"resource": resource, "request": {"method": "PUT", "url": f"Encounter/{eid}"}}
        )
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
        if event is not None and version.source == "bundle.meta":
            bundle["meta"] = {"lastUpdated": event}
        if event is not None and version.source == "bundle.timestamp":
            bundle["timestamp"] = event
        path.write_text(json.dumps(bundle))
    else:
        path.write_text(json.dumps(resource) + "\n")
    os.utime(path, (landed.timestamp(), landed.timestamp()))
    return path


def _ordering(version: Version, landed: datetime) -> datetime:
    """precombine_ts of a version by the documented rule (read back as naive UTC)."""
    event = version.own_event if version.own_event is not None else version.event
    return (BASE + timedelta(days=event)).replace(tzinfo=None) if event is not None else _landing_tier(landed)


def _expected(version: Version, status: str, landed: datetime, found: datetime | None = None) -> dict[str, Any]:
    """The row a winning version leaves; `found`: the ordering of the version a DELETE without a time deletes."""
    ordering = _ordering(version, landed)
    if version.kind == "delete" and version.event is None and found is not None:
        ordering = max(ordering, found + TOMBSTONE_STEP)  # strictly above the version it deleted
    if version.kind == "delete":
        return {"is_deleted": True, "status": None, "hospital_partition": DELETED_PARTITION, "precombine_ts": ordering}
    return {
        "is_deleted": False,
        "status": status,
        "hospital_partition": f"Hospital {status}",
        "precombine_ts": ordering,
    }


def _live(version: Version | None) -> bool:
    return version is not None and version.kind == "resource"


@pytest.mark.spark
def test_every_case_of_the_ordering_rule(spark: Any, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    config = job_config(tmp_path, landing)
    expected: dict[str, dict[str, Any]] = {}

    for n, case in enumerate(CASES):
        if case.stored is not None:
            landed = STORED_LANDED + timedelta(days=case.stored.landed)
            _write(landing, f"stored-{n:02d}", f"case-{n:02d}", case.stored, "planned", landed)
    first = job.run(config, once=True, spark=spark)
    for n, case in enumerate(CASES):
        landed = INCOMING_LANDED + timedelta(days=case.incoming.landed)
        _write(landing, f"incoming-{n:02d}", f"case-{n:02d}", case.incoming, "finished", landed)
        stored_landed = STORED_LANDED + timedelta(days=case.stored.landed if case.stored else 0)
        if case.winner == "incoming":
            found = _ordering(case.stored, stored_landed) if case.stored else None
            expected[f"case-{n:02d}"] = _expected(case.incoming, "finished", landed, found)
        else:
            assert case.stored is not None
            expected[f"case-{n:02d}"] = _expected(case.stored, "planned", stored_landed)
    second = job.run(config, once=True, spark=spark)

    rows = read_table(spark, config.table_uri("bronze_encounter"))
    assert len(rows) == len({r["encounter_id"] for r in rows}), "one row per encounter, tombstones included"
    actual = {
        r["encounter_id"]: {k: r[k] for k in ("is_deleted", "status", "hospital_partition", "precombine_ts")}
        for r in rows
    }
    wrong = {eid: (actual.get(eid), want) for eid, want in expected.items() if actual.get(eid) != want}
    assert not wrong, "\n".join(
        f"{eid} ({CASES[int(eid[5:])].why}): got {g}, want {w}" for eid, (g, w) in wrong.items()
    )

    # rows_deleted counts encounters that were live and are tombstones now; delete_requests every DELETE read.
    gone = sum(_live(c.stored) and c.incoming.kind == "delete" and c.winner == "incoming" for c in CASES)
    asked = sum(c.incoming.kind == "delete" for c in CASES)
    stored_deletes = sum(c.stored is not None and c.stored.kind == "delete" for c in CASES)
    assert [(b.stats.rows_deleted, b.stats.delete_requests) for b in first.batches] == [(0, stored_deletes)]
    assert [(b.stats.rows_deleted, b.stats.delete_requests) for b in second.batches] == [(gone, asked)]
    log = {r["batch_id"]: r for r in read_table(spark, config.table_uri("bronze_encounter_ingest_log"))}
    assert sorted((r["rows_deleted"], r["delete_requests"]) for r in log.values()) == sorted(
        [(0, stored_deletes), (gone, asked)]
    )


def _record(uri: str, ordinal: int, text: str | None, modified: datetime, kind: str = "resource") -> dict[str, Any]:
    return {
        "sourcename": uri,
        "position": f"line {ordinal + 1}",
        "kind": kind,
        "resource_type": "Encounter",
        "resource_id": json.loads(text)["id"] if text else "k",
        "resource_json": text,
        "file_modified": modified,
        "ordinal": ordinal,
    }


def _version(status: str, updated: str | None = None) -> str:
    resource: dict[str, Any] = {"resourceType": "Encounter", "id": "k", "status": status}
    if updated:
        resource["meta"] = {"lastUpdated": updated}
    return json.dumps(resource)


@pytest.mark.spark
@pytest.mark.parametrize(
    ("records", "winner"),
    [
        # Equal event times: the later file modification time wins, whatever the file names say.
        (
            [("file:///z.ndjson", 0, _version("planned", "2024-01-01T00:00:00Z"), STORED_LANDED + timedelta(1)),
             ("file:///a.ndjson", 0, _version("finished", "2024-01-01T00:00:00Z"), STORED_LANDED + timedelta(2))],
            "finished",
        ),
        # Equal event and modification times: the later URI wins.
        (
            [("file:///b.ndjson", 0, _version("finished", "2024-01-01T00:00:00Z"), STORED_LANDED),
             ("file:///a.ndjson", 0, _version("planned", "2024-01-01T00:00:00Z"), STORED_LANDED)],
            "finished",
        ),
        # The same file twice: the later record wins (line 12 after line 2, not by text order).
        (
            [("file:///a.ndjson", 11, _version("finished"), STORED_LANDED),
             ("file:///a.ndjson", 1, _version("planned"), STORED_LANDED)],
            "finished",
        ),
        # An event time beats a later landing time in the same batch.
        (
            [("file:///a.ndjson", 0, _version("finished", "2020-01-01T00:00:00Z"), STORED_LANDED),
             ("file:///b.ndjson", 0, _version("planned"), STORED_LANDED + timedelta(30))],
            "finished",
        ),
    ],
)  # fmt: skip
def test_one_version_per_encounter_within_a_batch(spark: Any, records: list[tuple], winner: str) -> None:
    rows = [_record(uri, ordinal, text, modified) for uri, ordinal, text, modified in records]
    for order in (rows, rows[::-1]):  # the input's order must not matter
        flat = flatten(spark.createDataFrame(order, RECORD_SCHEMA), ingested_at=STORED_LANDED)
        (row,) = newest_versions(flat).collect()
        assert row["status"] == winner


@pytest.mark.spark
def test_a_delete_and_an_older_version_in_one_batch_leave_the_tombstone(spark: Any) -> None:
    delete = _record("file:///d.json", 0, None, STORED_LANDED, kind="delete")
    delete["bundle_timestamp"] = "2024-02-01T00:00:00Z"
    older = _record("file:///e.ndjson", 0, _version("finished", "2024-01-15T00:00:00Z"), STORED_LANDED + timedelta(9))
    flat = flatten(spark.createDataFrame([older, delete], RECORD_SCHEMA), ingested_at=STORED_LANDED)
    (row,) = newest_versions(flat).collect()
    assert (row["is_deleted"], row["precombine_ts"], row["hospital_partition"]) == (
        True,
        datetime(2024, 2, 1),
        DELETED_PARTITION,
    )


@pytest.mark.spark
def test_bundle_times_before_1971_are_no_event_time_and_an_own_one_is_rejected(spark: Any) -> None:
    unset_clock = _record("file:///b.json", 0, _version("finished"), STORED_LANDED)
    unset_clock["bundle_timestamp"] = "1970-01-01T00:00:00Z"
    too_early = _record("file:///c.ndjson", 0, _version("finished", "1969-07-20T20:17:00Z"), STORED_LANDED)
    too_early["resource_json"] = too_early["resource_json"].replace('"k"', '"early"')
    flat = flatten(spark.createDataFrame([unset_clock, too_early], RECORD_SCHEMA), ingested_at=STORED_LANDED)
    rows = {r["sourcename"]: r for r in flat.collect()}
    assert rows["file:///b.json"]["precombine_ts"] == _landing_tier(STORED_LANDED)
    assert rows["file:///b.json"]["reject_reason"] is None
    assert (rows["file:///c.ndjson"]["reject_reason"], rows["file:///c.ndjson"]["reject_message"]) == (
        "bad_datetime",
        "Encounter.meta.lastUpdated is before 1971",
    )


def test_each_case_is_run_once() -> None:
    assert len({(c.stored, c.incoming) for c in CASES}) == len(CASES), "each case once"
