"""One region rule for every AWS client and store (streaming/adapters/aws.py): a setting, else AWS_REGION, else
AWS_DEFAULT_REGION, else the profile's. The pinned boto3 reads only AWS_DEFAULT_REGION, so each variable is set
alone here, in a region other than the fixtures' (moto keeps DynamoDB tables per region: a client in the wrong
region does not find the table)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
from aws_fixtures import REGION, TEMPLATE

from streaming import config as conf
from streaming.adapters import aws
from streaming.generate import generate
from streaming.lakehouse.session import s3a_conf
from streaming.ledger import open_ledger
from streaming.ops.query import storage_options

ROOT = Path(__file__).resolve().parents[1]
ELSEWHERE = "eu-west-1"  # not the fixtures' region, so a client that fell back to it would miss the table
assert ELSEWHERE != REGION


def _only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str | None, region: str = ELSEWHERE) -> None:
    """The environment names the region in `variable` alone (None: nowhere); no profile names one either."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "aws-config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))  # no region from a developer's ~/.aws/config
    if variable:
        monkeypatch.setenv(variable, region)


def _moto(service: str, region: str = ELSEWHERE) -> object:
    """A client of the moto server in `region`, built without the product's code (to set up and to check)."""
    session = boto3.session.Session("testing", "testing", region_name=region)
    return session.client(service, endpoint_url=os.environ["AWS_ENDPOINT_URL"])


def _create_ledger_table(name: str, region: str = ELSEWHERE) -> None:
    """deploy/template.json's `LedgerTable`, created in `region`."""
    props = json.loads(TEMPLATE.read_text())["Resources"]["LedgerTable"]["Properties"]
    shape = {key: props[key] for key in ("BillingMode", "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes")}
    dynamodb = _moto("dynamodb", region)
    dynamodb.create_table(TableName=name, **shape)  # type: ignore[attr-defined]
    dynamodb.get_waiter("table_exists").wait(TableName=name)  # type: ignore[attr-defined]


def _items(table: str, region: str = ELSEWHERE) -> list[dict[str, object]]:
    return _moto("dynamodb", region).scan(TableName=table, ConsistentRead=True)["Items"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("variable", ["AWS_REGION", "AWS_DEFAULT_REGION"])
def test_one_region_variable_alone_reaches_the_ledger_s3_and_every_store(
    variable: str, aws_env: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _create_ledger_table(unique_name)
    _only(monkeypatch, tmp_path, variable)
    config = conf.load(
        None, {"warehouse": str(tmp_path / "wh"), "ledger.backend": "dynamodb", "ledger.table": unique_name}
    )

    # The ledger as the job opens it: it writes its lease into the table in that region, and reads it back.
    ledger = open_ledger(config)
    try:
        assert ledger.acquire_lease("region-test", "owner-1", timedelta(minutes=1)) == 1
        assert ledger.committed(["s3://b/never.json"]) == set()
    finally:
        ledger.close()
    assert len(_items(unique_name)) == 1

    # S3 through the same rule: a bucket in that region, an object written and listed.
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=unique_name, CreateBucketConfiguration={"LocationConstraint": ELSEWHERE})
    s3.put_object(Bucket=unique_name, Key="landing/a.json", Body=b"{}")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=unique_name)["Contents"]] == ["landing/a.json"]

    # Every client the job builds, and the two stores that are no boto3 client (S3A in the JVM, hudi-rs).
    for service in ("dynamodb", "s3", "glue", "cloudwatch", "cloudformation"):
        assert aws.client(service).meta.region_name == ELSEWHERE, service
    assert s3a_conf()["spark.hadoop.fs.s3a.endpoint.region"] == ELSEWHERE
    assert storage_options(f"s3a://{unique_name}/wh/bronze_encounter")["aws_region"] == ELSEWHERE


def test_a_setting_beats_aws_region_which_beats_aws_default_region(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _only(monkeypatch, tmp_path, "AWS_DEFAULT_REGION", "eu-central-1")
    assert aws.resolve_region() == "eu-central-1"
    monkeypatch.setenv("AWS_REGION", ELSEWHERE)
    assert aws.resolve_region() == ELSEWHERE
    assert aws.client("dynamodb").meta.region_name == ELSEWHERE
    assert s3a_conf()["spark.hadoop.fs.s3a.endpoint.region"] == ELSEWHERE
    assert aws.resolve_region("ap-south-1") == "ap-south-1"
    assert aws.client("dynamodb", "ap-south-1").meta.region_name == "ap-south-1"
    # Neither variable: boto3's own configuration (here a profile's region) decides.
    _only(monkeypatch, tmp_path, None)
    (tmp_path / "aws-config").write_text("[default]\nregion = sa-east-1\n")
    assert aws.resolve_region() == ""
    assert aws.client("dynamodb").meta.region_name == "sa-east-1"
    assert "spark.hadoop.fs.s3a.endpoint.region" not in s3a_conf()


@pytest.mark.job  # the real job's CLI (a JVM) in a separate process
def test_run_with_only_aws_region_ingests_from_s3_into_s3_with_the_dynamodb_ledger(
    aws_env: str, unique_name: str, tmp_path: Path
) -> None:
    """`run --ledger-backend dynamodb` with AWS_REGION alone, as the error messages advise: the ledger, S3A and
    hudi-rs (`query`, `status`) all find the region's table and bucket."""
    _create_ledger_table(unique_name)
    s3 = _moto("s3")
    s3.create_bucket(Bucket=unique_name, CreateBucketConfiguration={"LocationConstraint": ELSEWHERE})  # type: ignore[attr-defined]
    generated = generate(tmp_path / "gen", files=2, per_file=4, seed=31)
    for path in generated.files:
        s3.upload_file(str(path), unique_name, f"landing/{path.name}")  # type: ignore[attr-defined]
    empty = tmp_path / "aws-config"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_DEFAULT_REGION", "AWS_PROFILE")}
    env |= {"AWS_REGION": ELSEWHERE, "AWS_CONFIG_FILE": str(empty)}
    where = [
        "--source", f"s3a://{unique_name}/landing/",
        "--warehouse", f"s3a://{unique_name}/warehouse",
        "--checkpoint", str(tmp_path / "checkpoint"),  # checkpoints want atomic rename: local disk
        "--ledger-backend", "dynamodb",
        "--ledger-table", unique_name,
        "--set", "catalog.backend=none",
    ]  # fmt: skip

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "streaming.cli", *args]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    run = cli("run", "--once", *where)
    assert run.returncode == 0, run.stderr[-3000:]
    # The ledger's items, read straight from the region's table: each file committed (keyed `file#<table>|<uri>`).
    files = {f"s3://{unique_name}/landing/{p.name}" for p in generated.files}
    keys = [item["pk"]["S"] for item in _items(unique_name)]  # type: ignore[index]
    assert {key.partition("|")[2] for key in keys if key.startswith("file#")} == files
    answer = cli("query", *where, "--format", "json", "SELECT count(*) AS n FROM bronze_encounter")
    assert answer.returncode == 0, answer.stderr[-3000:]
    assert json.loads(answer.stdout) == [{"n": len(generated.encounter_ids)}]
    state = cli("status", *where, "--format", "json")
    assert state.returncode == 0, state.stderr[-3000:]
    figures = json.loads(state.stdout)
    assert figures["waiting"]["count"] == 0
    assert [t["rows"] for t in figures["tables"] if t["name"] == "bronze_encounter"] == [len(generated.encounter_ids)]
