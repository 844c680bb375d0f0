"""`status`: files waiting in the source (local and S3), recent batches, quarantine and table figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import copy_samples, job_config, read_table

from streaming import aws, status
from streaming.config import ConfigError, JobConfig
from streaming.ledger import SqliteLedger

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def _uri(path: Path) -> str:
    return f"file:{path}"  # how Spark's Hadoop Path (and so the ledger) spells a local file


def _land(path: Path, content: bytes, modified: datetime) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, (modified.timestamp(), modified.timestamp()))
    return path


# -- without a JVM --------------------------------------------------------------------------------------------------


def test_status_imports_no_pyspark() -> None:
    code = "import sys, streaming.status, streaming.query; print('pyspark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_hidden_names_are_those_spark_skips() -> None:
    skipped = ["_SUCCESS", "_temporary", ".part.json", ".staging", "a.json._COPYING_"]
    listed = ["a.json", "_metadata", "_common_metadata", "_x=1", "a_b.json", "x.", "COPYING"]
    assert [n for n in skipped + listed if status.hidden(n)] == skipped


def test_local_waiting_files_skip_hidden_and_committed(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    old = _land(landing / "2024" / "old.ndjson", b"{}\n", NOW - timedelta(hours=5))
    odd = _land(landing / "a b%41.json", b"{}", NOW - timedelta(minutes=30))
    empty = _land(landing / "empty.json", b"", NOW - timedelta(minutes=1))
    done = _land(landing / "done.json", b"{}", NOW - timedelta(days=3))
    _land(landing / "_tmp" / "hidden.json", b"{}", NOW - timedelta(days=9))
    _land(landing / ".staging.json", b"{}", NOW - timedelta(days=9))
    _land(landing / "part.json._COPYING_", b"{}", NOW - timedelta(days=9))
    config = job_config(tmp_path, landing)
    ledger = SqliteLedger(config.ledger_path)
    ledger.commit("run-000000", [_uri(done)], NOW)
    ledger.close()

    waiting = status.waiting_files(config, now=NOW)

    assert waiting.files == [
        (_uri(old), NOW - timedelta(hours=5)),
        (_uri(odd), NOW - timedelta(minutes=30)),
        (_uri(empty), NOW - timedelta(minutes=1)),
    ]
    assert waiting.count == 3
    assert waiting.oldest_age_seconds == pytest.approx(5 * 3600)


def test_without_a_ledger_everything_waits_and_none_is_created(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    one = _land(landing / "one.json", b"{}", NOW - timedelta(seconds=42))
    config = job_config(tmp_path, landing)

    assert status.waiting_files(config, now=NOW) == status.Waiting(1, 42.0, [(_uri(one), NOW - timedelta(seconds=42))])
    assert not Path(config.ledger_path).exists()
    assert status.waiting_files(job_config(tmp_path, tmp_path / "nothing-landed-yet")) == status.Waiting(0, None, [])


def test_s3a_waiting_files_against_the_sqlite_ledger(s3_bucket: str, tmp_path: Path) -> None:
    s3 = aws.client("s3")
    keys = ["landing/a.json", "landing/2024/01/b.ndjson", "landing/c d%41.json", "landing/empty.json"]
    for key in [*keys, "landing/_SUCCESS", "landing/.tmp/c.json", "landing/dir/", "landing2/x.json", "other/y.json"]:
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b"" if key.endswith(("/", "empty.json")) else b"{}")
    modified = {key: s3.head_object(Bucket=s3_bucket, Key=key)["LastModified"].astimezone(UTC) for key in keys}
    config = _s3_config(tmp_path, s3_bucket)
    ledger = SqliteLedger(config.ledger_path)
    ledger.commit("run-000000", [f"s3a://{s3_bucket}/landing/a.json"], NOW)
    ledger.close()
    now = max(modified.values()) + timedelta(seconds=100)

    waiting = status.waiting_files(config, now=now)

    expected = sorted((f"s3a://{s3_bucket}/{k}", modified[k]) for k in keys if k != "landing/a.json")
    assert sorted(waiting.files) == expected
    assert waiting.count == 3
    assert waiting.oldest_age_seconds == pytest.approx((now - min(m for _, m in expected)).total_seconds())


@pytest.mark.slow  # 1,003 objects put into moto: seconds here
def test_s3_listing_reads_every_page(s3_bucket: str, tmp_path: Path) -> None:
    s3 = aws.client("s3")
    keys = [f"landing/bulk/{i:04d}.json" for i in range(1003)]  # list_objects_v2 returns 1,000 keys a page
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=s3_bucket, Key=key, Body=b"{}"), keys))

    waiting = status.waiting_files(_s3_config(tmp_path, s3_bucket))

    assert sorted(uri for uri, _ in waiting.files) == [f"s3a://{s3_bucket}/{k}" for k in keys]


def _s3_config(tmp_path: Path, bucket: str) -> JobConfig:
    return job_config(tmp_path, f"s3a://{bucket}/landing", **{"ledger.path": str(tmp_path / "ledger.sqlite3")})


def test_status_before_any_run(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    _land(landing / "one.json", b"{}", NOW - timedelta(minutes=2))
    config = job_config(tmp_path, landing)

    waiting = status.waiting_files(config, now=NOW)
    assert (waiting.count, waiting.oldest_age_seconds) == (1, 120.0)
    # Before the first run the warehouse holds no table: status says so instead of reporting empty tables, which a
    # mistyped --warehouse would look like too.
    with pytest.raises(ConfigError, match="holds none of the tables"):
        status.collect(config, now=NOW)


# -- after the real job ran over the Synthea samples -----------------------------------------------------------------


@dataclass(frozen=True)
class Landed:
    config: JobConfig
    before: status.Waiting
    files: list[tuple[str, datetime]]  # (uri, modified), oldest first


@pytest.fixture(scope="module")
def landed(spark: Any, samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Landed:
    """Synthea NDJSON plus an empty and a truncated file, listed by `status`, then ingested by the real job once."""
    from streaming import job

    root = tmp_path_factory.mktemp("status")
    landing = root / "landing"
    (ndjson,) = copy_samples(samples, landing, bundles=False)
    now = datetime.now(UTC).replace(microsecond=0)
    times = {
        ndjson: now - timedelta(hours=2),
        _land(landing / "empty.json", b"", now): now - timedelta(minutes=10),
        _land(landing / "late" / "cut.json", b'{"resourceType": "Encounter", "id": "t1", ', now): now,
    }
    for path, modified in times.items():
        os.utime(path, (modified.timestamp(), modified.timestamp()))
    config = job_config(root, landing)
    before = status.waiting_files(config, now=now + timedelta(seconds=5))
    job.run(config, once=True, spark=spark)
    return Landed(config, before, sorted(((_uri(p), m) for p, m in times.items()), key=lambda f: f[1]))


@pytest.mark.slow
def test_landed_files_wait_until_the_job_commits_them(landed: Landed) -> None:
    assert landed.before.files == landed.files
    assert landed.before.count == 3
    assert landed.before.oldest_age_seconds == pytest.approx(2 * 3600 + 5)
    assert status.waiting_files(landed.config) == status.Waiting(0, None, [])


@pytest.mark.slow
def test_collect_equals_what_the_tables_hold(landed: Landed, spark: Any) -> None:
    config = landed.config
    s = status.collect(config, now=NOW, last=5)

    log_rows = read_table(spark, config.table_uri(config.tables.ingest_log))
    assert len(log_rows) == len(s.batches) == 1
    (row,), (batch,) = log_rows, s.batches
    assert batch.batch_key == row["batch_key"]
    assert (
        (batch.files, batch.rows_written, batch.rows_rejected)
        == (3, 3927, 2)
        == (
            row["file_count"],
            row["rows_written"],
            row["rows_rejected"],
        )
    )
    assert batch.commit_instant == row["commit_instant"]
    assert batch.seconds == pytest.approx((row["ended_at"] - row["started_at"]).total_seconds())

    quarantined = read_table(spark, config.table_uri(config.tables.quarantine))
    assert s.quarantine == {"empty_file": 1, "truncated": 1} == Counter(r["reason"] for r in quarantined)

    figures = {t.name: t for t in s.tables}
    bronze_uri = Path(config.table_uri(config.tables.encounter))
    bronze = read_table(spark, str(bronze_uri))
    files = {(r["_hoodie_partition_path"], r["_hoodie_file_name"]) for r in bronze}
    commits = sorted(p.name.split(".")[0] for p in (bronze_uri / ".hoodie").glob("*.commit"))
    b = figures[config.tables.encounter]
    assert b.exists
    assert b.rows == len(bronze) == 3927
    assert b.partitions == len({r["hospital_partition"] for r in bronze}) == 118
    assert b.data_files == len(files)
    assert b.bytes == sum((bronze_uri / partition / name).stat().st_size for partition, name in files)
    assert (b.commits, b.last_commit) == (len(commits), commits[-1])
    assert (b.clusterings, b.last_clustering_at) == (0, None)  # the hourly default: not yet
    for name, rows in ((config.tables.ingest_log, 1), (config.tables.quarantine, 2)):
        assert (figures[name].rows, figures[name].partitions, figures[name].data_files) == (rows, 0, 1)

    as_json = json.loads(json.dumps(s.to_json()))
    assert as_json["waiting"] == {"count": 0, "oldest_age_seconds": None, "files": []}
    assert as_json["quarantine"] == {"empty_file": 1, "truncated": 1}
    assert [t["rows"] for t in as_json["tables"]] == [3927, 1, 2]
    assert as_json["batches"][0]["batch_key"] == row["batch_key"]
    text = status.render_text(s)
    assert "waiting files: 0" in text
    assert "3927" in text and "empty_file" in text and "truncated" in text
