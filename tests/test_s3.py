"""The S3 path: source files and tables on a moto S3 bucket via s3a, the ledger in moto DynamoDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_fixtures import create_ledger_table
from helpers import read_table

from streaming import aws, job
from streaming import config as conf
from streaming.generate import generate
from streaming.ledger import open_ledger

pytestmark = pytest.mark.slow


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
