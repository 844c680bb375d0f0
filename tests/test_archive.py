"""`source_archive`: ingested files leave the landing prefix (the file source's cleanSource=archive), nothing else
changes: rows, ledger and ingest log name the landed URI, no file is taken twice, `reingest` finds an archived file.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import job_config, read_table

from streaming import config as conf
from streaming.ledger import LeaseHeld, open_ledger
from streaming.ledger.lease import lease_name
from streaming.pipeline import job, reingest


def _feed(path: Path, *ids: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        {
            "resourceType": "Encounter",
            "id": eid,
            "meta": {"lastUpdated": "2024-01-01T09:00:00Z"},
            "status": "finished",
            "serviceProvider": {"display": "General Hospital"},
        }
        for eid in ids
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def _wait_for(predicate: Any, seconds: float = 60) -> None:
    """Spark archives on a background thread once it commits a batch: wait for it, boundedly."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the file source to archive")
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("source", "archive", "error"),
    [
        ("/data/landing", "/data/landing/archive", "must not be inside source"),
        ("/data/landing", "/data/landing", "must not be inside source"),
        ("s3://landing/fhir/", "s3://landing/fhir/done/", "must not be inside source"),
        ("s3://landing/fhir/", "s3://other/archive/", "same file system"),
        ("s3://landing/fhir/", "/local/archive", "same file system"),
    ],
)
def test_an_archive_the_source_would_list_or_cannot_reach_is_refused(source: str, archive: str, error: str) -> None:
    with pytest.raises(conf.ConfigError, match=error):
        conf.load(None, {"source": source, "source_archive": archive})


def test_an_archive_beside_the_source_is_accepted() -> None:
    config = conf.load(None, {"source": "s3://landing/fhir/", "source_archive": "s3://landing/fhir-archive/"})
    assert config.source_archive == "s3://landing/fhir-archive/"
    assert reingest.archived_uri(config.source_archive, "s3a://landing/fhir/a/b.ndjson") == (
        "s3://landing/fhir-archive/fhir/a/b.ndjson"
    )


@pytest.mark.spark
def test_ingested_files_move_to_the_archive_and_are_never_taken_twice(spark: Any, tmp_path: Path) -> None:
    landing, archive = tmp_path / "landing", tmp_path / "archive"
    config = job_config(tmp_path, landing, source_archive=str(archive))
    first = _feed(landing / "2024" / "first.ndjson", "e1", "e2")
    job.run(config, once=True, spark=spark)
    # Spark archives a batch's files when it commits the batch: at the next batch with data, here the next run.
    assert _files(landing) == {"2024/first.ndjson"}

    second = _feed(landing / "second.ndjson", "e3")
    run = job.run(config, once=True, spark=spark)
    assert run.files == 1  # only the new file: the archived one is neither listed nor taken again
    first_archived = archive / str(first).lstrip("/")
    _wait_for(first_archived.exists)
    assert not first.exists()
    assert _files(landing) == {"second.ndjson"}

    bronze = read_table(spark, config.table_uri(config.tables.encounter))
    uri = {"first": f"file:{first}", "second": f"file:{second}"}
    assert sorted((r["encounter_id"], r["sourcename"]) for r in bronze) == [
        ("e1", uri["first"]),
        ("e2", uri["first"]),
        ("e3", uri["second"]),
    ]
    log_rows = sorted(read_table(spark, config.table_uri(config.tables.ingest_log)), key=lambda r: r["started_at"])
    assert [(r["files"], r["rows_written"]) for r in log_rows] == [([uri["first"]], 2), ([uri["second"]], 1)]

    # Refused while another instance holds the writer lease: the archived file stays where it is.
    busy = dataclasses.replace(config, lease_wait_seconds=0)
    ledger = open_ledger(config)
    try:
        ledger.acquire_lease(lease_name(config), "the-stream", timedelta(minutes=5))
        with pytest.raises(LeaseHeld):
            reingest.reingest(busy, [str(first)], spark=spark)
        ledger.release_lease(lease_name(config), "the-stream")
    finally:
        ledger.close()
    assert first_archived.exists() and not first.exists()

    # reingest names the file by where it landed: it is moved back and taken again under the same URI.
    summary = reingest.reingest(config, [str(first)], spark=spark)
    assert [b.files for b in summary.batches] == [(uri["first"],)]
    assert first.exists() and not first_archived.exists()
    assert sum(b.stats.rows_written for b in summary.batches) == 2
    assert len(read_table(spark, config.table_uri(config.tables.encounter))) == 3
    ledger = open_ledger(config)
    try:
        assert ledger.committed(uri.values()) == set(uri.values())
    finally:
        ledger.close()
