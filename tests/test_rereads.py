"""Re-reads never change what the table says: a file read again lands exactly as it did the first time.

Each scenario runs the real CLI (`run --once`, `reingest`, `replay-quarantine`) over files on disk (or on the moto
S3 server), then reads bronze with the JVM-free reader (hudi-rs), not with the job's own Spark reader.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import read_table

from streaming import cli
from streaming.adapters import aws

pytestmark = pytest.mark.spark

LANDED = datetime(2024, 3, 1, tzinfo=UTC).timestamp()  # when the first files landed (their modification time)


def _encounter(eid: str, status: str, updated: str | None = None, hospital: str = "General") -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Encounter", "id": eid, "status": status}
    resource["serviceProvider"] = {"display": hospital}
    if updated:
        resource["meta"] = {"lastUpdated": updated}
    return resource


def _ndjson(path: Path, lines: list[Any], landed: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    os.utime(path, (landed, landed))
    return path


def _timeless_delete(path: Path, eid: str, landed: float) -> Path:
    """A transaction Bundle deleting `eid`, with no time anywhere: it deletes the newest version it finds."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": f"Encounter/{eid}"}}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bundle))
    os.utime(path, (landed, landed))
    return path


def _bronze(warehouse: Path | str) -> dict[str, tuple[bool, str | None]]:
    """encounter_id -> (is_deleted, status), read with hudi-rs."""
    from hudi import HudiTableBuilder

    uri = f"{str(warehouse).rstrip('/')}/bronze_encounter"
    table = HudiTableBuilder.from_base_uri(uri).build()
    return {r["encounter_id"]: (r["is_deleted"], r["status"]) for b in table.read() for r in b.to_pylist()}


def _cli(*argv: str) -> None:
    assert cli.main(list(argv)) == 0


def test_a_delete_read_again_does_not_delete_the_encounter_re_created_after_it(spark: Any, tmp_path: Path) -> None:
    landing, warehouse = tmp_path / "landing", tmp_path / "warehouse"
    where = ["--source", str(landing), "--warehouse", str(warehouse)]
    _ndjson(landing / "1-first.ndjson", [_encounter("x", "in-progress", "2024-01-01T00:00:00Z")], LANDED)
    _cli("run", "--once", *where)
    delete = _timeless_delete(landing / "2-delete.json", "x", LANDED + 60)
    _cli("run", "--once", *where)
    assert _bronze(warehouse)["x"] == (True, None)
    # Re-created later, with a newer lastUpdated: alive again.
    _ndjson(landing / "3-again.ndjson", [_encounter("x", "finished", "2024-02-01T00:00:00Z")], LANDED + 120)
    _cli("run", "--once", *where)
    assert _bronze(warehouse)["x"] == (False, "finished")

    # The DELETE's file read again: it decides as it did the first time (the version it found then), so the
    # encounter re-created since stays.
    _cli("reingest", *where, str(delete))
    assert _bronze(warehouse)["x"] == (False, "finished")


def test_the_deleted_version_read_again_stays_deleted(spark: Any, tmp_path: Path) -> None:
    landing, warehouse = tmp_path / "landing", tmp_path / "warehouse"
    where = ["--source", str(landing), "--warehouse", str(warehouse)]
    first = _ndjson(
        landing / "1-first.ndjson",
        [_encounter("y", "finished", "2024-01-01T00:00:00Z"), _encounter("z", "planned", "2024-01-01T00:00:00Z"), "{"],
        LANDED,
    )
    _cli("run", "--once", *where)
    _timeless_delete(landing / "2-delete.json", "y", LANDED + 60)
    _cli("run", "--once", *where)
    assert _bronze(warehouse) == {"y": (True, None), "z": (False, "planned")}

    # Its file replayed for an unrelated bad line: only that line is taken back, and the deleted version, had it
    # been read again, would not tie its tombstone.
    _cli("replay-quarantine", *where)
    assert _bronze(warehouse) == {"y": (True, None), "z": (False, "planned")}
    quarantine = read_table(spark, str(warehouse / "bronze_encounter_quarantine"))
    assert [(r["source_position"], r["reason"]) for r in quarantine] == [("line 3", "truncated")]

    # A producer re-sends the same file under another name: the deleted version loses to its tombstone.
    shutil.copy(first, landing / "3-resent.ndjson")
    os.utime(landing / "3-resent.ndjson", (LANDED + 120, LANDED + 120))
    _cli("run", "--once", *where)
    assert _bronze(warehouse) == {"y": (True, None), "z": (False, "planned")}


def test_a_file_restored_from_the_s3_archive_keeps_its_landing_time(
    spark: Any, aws_env: str, s3_bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Versions without an event time are ordered by landing: a restored older file must not become the newest."""
    s3 = aws.client("s3")
    where = [
        "--source",
        f"s3a://{s3_bucket}/landing/",
        "--source-archive",
        f"s3a://{s3_bucket}/archive/",
        "--warehouse",
        f"s3a://{s3_bucket}/warehouse",
        "--checkpoint",
        str(tmp_path / "checkpoint"),
        "--ledger-path",
        str(tmp_path / "ledger.sqlite3"),
    ]

    def land(name: str, lines: list[Any]) -> None:
        s3.put_object(Bucket=s3_bucket, Key=f"landing/{name}", Body="".join(json.dumps(x) + "\n" for x in lines))

    land("older.ndjson", [_encounter("w", "planned"), _encounter("v", "planned")])
    _cli("run", "--once", *where)
    land("newer.ndjson", [_encounter("w", "finished")])
    _cli("run", "--once", *where)
    land("later.ndjson", [_encounter("u", "finished")])  # its batch makes Spark archive the earlier ones
    _cli("run", "--once", *where)
    archived = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="archive/").get("Contents", [])}
    assert "archive/landing/older.ndjson" in archived
    warehouse = f"s3://{s3_bucket}/warehouse"
    assert _bronze_s3(warehouse)["w"] == (False, "finished")

    # The older file is taken again: moved back from the archive (a copy, so "now" for S3) with its first time.
    _cli("reingest", *where, f"s3://{s3_bucket}/landing/older.ndjson")
    assert _bronze_s3(warehouse)["w"] == (False, "finished")
    head = s3.head_object(Bucket=s3_bucket, Key="landing/older.ndjson")
    rows = {r["encounter_id"]: r for r in read_table(spark, f"s3a://{s3_bucket}/warehouse/bronze_encounter")}
    assert rows["v"]["source_modified"] < head["LastModified"].replace(tzinfo=None) - timedelta(seconds=1)


def _bronze_s3(warehouse: str) -> dict[str, tuple[bool, str | None]]:
    """hudi-rs over the moto S3 server (its storage options come from the environment)."""
    from hudi import HudiTableBuilder

    from streaming.ops.query import hudi_uri, storage_options

    uri = hudi_uri(f"{warehouse}/bronze_encounter")
    builder = HudiTableBuilder.from_base_uri(uri)
    for key, value in storage_options(uri).items():
        builder = builder.with_storage_option(key, value)
    return {r["encounter_id"]: (r["is_deleted"], r["status"]) for b in builder.build().read() for r in b.to_pylist()}


def test_time_that_is_impossible_is_not_trusted_and_late_versions_are_counted(spark: Any, tmp_path: Path) -> None:
    landing, warehouse = tmp_path / "landing", tmp_path / "warehouse"
    where = ["--source", str(landing), "--warehouse", str(warehouse)]
    ahead = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    soon = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")  # within the tolerance
    _ndjson(
        landing / "1.ndjson",
        [
            _encounter("a", "planned", "2024-01-01T00:00:00Z"),
            _encounter("b", "planned", ahead),
            _encounter("c", "x", soon),
        ],
        LANDED,
    )
    _cli("run", "--once", *where)
    assert _bronze(warehouse) == {"a": (False, "planned"), "c": (False, "x")}
    quarantine = read_table(spark, str(warehouse / "bronze_encounter_quarantine"))
    assert [(r["source_position"], r["reason"]) for r in quarantine] == [("line 2", "future_datetime")]
    assert "more than 24 h after it was read" in quarantine[0]["message"]

    # A late, older version of `a` and a newer one of `b`: the older is discarded by Hudi and counted apart.
    _ndjson(
        landing / "2.ndjson",
        [_encounter("a", "cancelled", "2023-12-01T00:00:00Z"), _encounter("b", "finished", "2024-01-05T00:00:00Z")],
        LANDED + 60,
    )
    assert cli.main(["run", "--once", *where]) == 0
    assert _bronze(warehouse) == {"a": (False, "planned"), "b": (False, "finished"), "c": (False, "x")}
    log = {r["batch_id"]: r for r in read_table(spark, str(warehouse / "bronze_encounter_ingest_log"))}
    assert [(r["rows_written"], r["rows_stale"]) for _, r in sorted(log.items())] == [(2, 0), (1, 1)]


def test_a_history_bundles_delete_takes_its_entrys_time(spark: Any, tmp_path: Path) -> None:
    """`response.lastModified` says when the DELETE happened; the Bundle's timestamp only when it was assembled."""
    landing, warehouse = tmp_path / "landing", tmp_path / "warehouse"
    where = ["--source", str(landing), "--warehouse", str(warehouse)]
    _ndjson(landing / "1.ndjson", [_encounter("h", "finished", "2024-01-10T00:00:00Z")], LANDED)
    _cli("run", "--once", *where)
    history = {
        "resourceType": "Bundle",
        "type": "history",
        "timestamp": "2024-02-01T00:00:00Z",  # assembled after the update above...
        "entry": [
            {
                "request": {"method": "DELETE", "url": "Encounter/h"},
                "response": {"status": "204", "lastModified": "2024-01-05T00:00:00Z"},  # ...deleted before it
            }
        ],
    }
    (landing / "2-history.json").write_text(json.dumps(history))
    _cli("run", "--once", *where)
    assert _bronze(warehouse)["h"] == (False, "finished")
    rows = {r["encounter_id"]: r for r in read_table(spark, str(warehouse / "bronze_encounter"))}
    assert rows["h"]["precombine_ts"] == datetime(2024, 1, 10)
