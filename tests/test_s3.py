"""The S3 path: source files and tables on a moto S3 bucket via s3a, the ledger in moto DynamoDB."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aws_fixtures import create_ledger_table
from helpers import read_table

from streaming import config as conf
from streaming.adapters import aws
from streaming.generate import generate
from streaming.ledger import open_ledger
from streaming.pipeline import job, reingest

pytestmark = pytest.mark.spark


def test_job_reads_and_writes_s3_with_dynamodb_ledger(
    spark: Any, aws_env: str, s3_bucket: str, unique_name: str, tmp_path: Path
) -> None:
    generated = generate(tmp_path / "gen", files=4, per_file=25, seed=21)
    s3 = aws.client("s3")
    for path in generated.files:
        s3.upload_file(str(path), s3_bucket, f"landing/{path.name}")
    create_ledger_table(unique_name)
    config = conf.load(
        conf.env_file("local"),
        {
            "source": f"s3a://{s3_bucket}/landing/",
            "warehouse": f"s3a://{s3_bucket}/warehouse",
            "checkpoint": str(tmp_path / "checkpoint"),  # checkpoints want atomic rename: local disk
            "ledger.backend": "dynamodb",
            "ledger.table": unique_name,
        },
    )

    summary = job.run(config, once=True, spark=spark)

    expected_uris = sorted(f"s3a://{s3_bucket}/landing/{p.name}" for p in generated.files)
    assert sorted(u for b in summary.batches for u in b.files) == expected_uris
    rows = read_table(spark, config.table_uri("bronze_encounter"))
    assert sorted(r["encounter_id"] for r in rows) == sorted(generated.encounter_ids)
    assert {r["sourcename"] for r in rows} == set(expected_uris)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="warehouse/bronze_encounter/")["Contents"]}
    assert "warehouse/bronze_encounter/.hoodie/hoodie.properties" in keys
    ledger = open_ledger(config)
    assert ledger.committed(expected_uris) == set(expected_uris)
    # One object, two spellings: the ledger knows the s3:// spelling of a file listed as s3a:// too.
    assert ledger.committed([u.replace("s3a://", "s3://") for u in expected_uris]) == {
        u.replace("s3a://", "s3://") for u in expected_uris
    }

    again = job.run(config, once=True, spark=spark)
    assert again.files == 0
    assert len(read_table(spark, config.table_uri("bronze_encounter_ingest_log"))) == 1


def test_the_archive_moves_ingested_objects_beside_the_prefix_and_reingest_moves_one_back(
    spark: Any, aws_env: str, s3_bucket: str, tmp_path: Path
) -> None:
    s3 = aws.client("s3")

    def land(name: str) -> None:
        generated = generate(tmp_path / name, files=1, per_file=3, seed=ord(name[0]))
        s3.upload_file(str(generated.files[0]), s3_bucket, f"landing/{name}")

    land("a.ndjson")
    land("b.ndjson")
    config = conf.load(
        conf.env_file("local"),
        {
            "source": f"s3a://{s3_bucket}/landing/",
            "source_archive": f"s3://{s3_bucket}/archive/",  # another spelling of the same bucket: accepted
            "warehouse": f"s3a://{s3_bucket}/warehouse",
            "checkpoint": str(tmp_path / "checkpoint"),
            "ledger.path": str(tmp_path / "ledger.sqlite3"),
        },
    )

    def keys(prefix: str) -> set[str]:
        return {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix=prefix).get("Contents", [])}

    job.run(config, once=True, spark=spark)
    # A batch's files are archived when Spark commits it, at the next batch with data.
    assert keys("landing/") == {"landing/a.ndjson", "landing/b.ndjson"}
    land("c.ndjson")
    again = job.run(config, once=True, spark=spark)
    assert again.files == 1
    deadline = time.monotonic() + 60  # Spark archives on a background thread
    while len(keys("landing/")) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert keys("landing/") == {"landing/c.ndjson"}
    assert keys("archive/") == {"archive/landing/a.ndjson", "archive/landing/b.ndjson"}

    summary = reingest.reingest(config, [f"s3://{s3_bucket}/landing/a.ndjson"], spark=spark)
    assert [b.files for b in summary.batches] == [(f"s3a://{s3_bucket}/landing/a.ndjson",)]
    assert keys("landing/") == {"landing/a.ndjson", "landing/c.ndjson"}
    assert keys("archive/") == {"archive/landing/b.ndjson"}
    assert len(read_table(spark, config.table_uri("bronze_encounter"))) == 9
