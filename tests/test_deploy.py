"""The deploy path: template consistent with the code, Glue arguments parsed by the CLI, deploy against moto."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from streaming import aws
from streaming.glue_entry import load_config
from streaming.session import HUDI_SPARK_CONF

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = json.loads((ROOT / "deploy" / "template.json").read_text())


def _deploy_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_script", ROOT / "deploy" / "deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _job_args() -> dict[str, Any]:
    return TEMPLATE["Resources"]["StreamingJob"]["Properties"]["DefaultArguments"]


def test_ledger_table_in_template_matches_create_table(aws_env: str, unique_name: str) -> None:
    from streaming.ledger_dynamodb import create_table

    create_table(unique_name)
    live = aws.client("dynamodb").describe_table(TableName=unique_name)["Table"]
    props = TEMPLATE["Resources"]["LedgerTable"]["Properties"]
    assert props["KeySchema"] == live["KeySchema"]
    assert sorted(props["AttributeDefinitions"], key=str) == sorted(live["AttributeDefinitions"], key=str)
    gsi = {ix["IndexName"]: (ix["KeySchema"], ix["Projection"]) for ix in props["GlobalSecondaryIndexes"]}
    assert gsi == {ix["IndexName"]: (ix["KeySchema"], ix["Projection"]) for ix in live["GlobalSecondaryIndexes"]}


def test_glue_job_is_a_streaming_job_on_glue_51_with_the_session_settings() -> None:
    job = TEMPLATE["Resources"]["StreamingJob"]["Properties"]
    assert job["Command"]["Name"] == "gluestreaming"
    assert job["GlueVersion"] == "5.1"
    args = _job_args()
    assert args["--datalake-formats"] == "hudi"
    confs = dict(part.strip().split("=", 1) for part in args["--conf"].split("--conf"))
    assert confs == HUDI_SPARK_CONF  # the same Hudi/UTC settings the local session factory uses


def test_glue_arguments_parse_into_the_job_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no glue.toml here: the repo's checkpoints_conf/glue.toml is the file
    argv = [
        "--JOB_ID", "j_1", "--JOB_RUN_ID", "jr_1", "--job-bookmark-option", "job-bookmark-disable",
        "--source", "s3://landing-b/fhir/encounter/", "--warehouse", "s3://lake-b/bronze/",
        "--checkpoint", "s3://lake-b/_checkpoints/bronze_encounter/",
        "--ledger-backend", "dynamodb", "--ledger-table", "ledger-t",
        "--conf", _job_args()["--conf"],  # Glue's own argument: never a prefix of --config
    ]  # fmt: skip
    config = load_config(argv)
    assert (config.source, config.warehouse, config.checkpoint_uri) == (
        "s3://landing-b/fhir/encounter/",
        "s3://lake-b/bronze/",
        "s3://lake-b/_checkpoints/bronze_encounter/",
    )
    assert (config.ledger.backend, config.ledger.table) == ("dynamodb", "ledger-t")
    assert config.trigger_interval == "60 seconds"  # from glue.toml, not a default
    assert config.catalog.backend == "glue"


def test_the_job_registers_tables_in_the_database_the_stack_creates_and_grants() -> None:
    """The role grants the DatabaseName parameter's database; the job must be told that name, not assume it."""
    database = "lake_bronze_prod"
    rendered = _job_args()["--set"]["Fn::Sub"].replace("${DatabaseName}", database)
    config = load_config(["--set", rendered])
    assert config.tables.database == database
    statements = TEMPLATE["Resources"]["JobRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    (catalog,) = [s for s in statements if s.get("Sid") == "Catalog"]
    assert {"Fn::Sub": "arn:aws:glue:${AWS::Region}:${AWS::AccountId}:database/${DatabaseName}"} in catalog["Resource"]


@pytest.mark.filterwarnings("ignore:Tried to parse AWS..Glue:UserWarning")  # moto's CFN skips Glue resources
def test_deploy_uploads_artifacts_and_creates_the_stack(aws_env: str, s3_bucket: str, tmp_path: Path) -> None:
    deploy = _deploy_module()
    wheel = deploy.build_wheel(tmp_path)
    s3 = aws.client("s3")
    keys = deploy.upload_artifacts(s3, s3_bucket, "bronze-encounter/", wheel)
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert (
        listed
        == set(keys.values())
        == {
            f"bronze-encounter/{wheel.name}",
            "bronze-encounter/glue_entry.py",
            "bronze-encounter/glue.toml",
        }
    )
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "streaming/glue_entry.py" in names and "streaming/batch.py" in names

    cfn = aws.client("cloudformation")
    params = {
        "LandingBucket": "landing-b",
        "LakehouseBucket": "lake-b",
        "ArtifactsBucket": s3_bucket,
        "WheelName": wheel.name,
        "LedgerTableName": f"{s3_bucket}-ledger",
    }
    assert deploy.deploy_stack(cfn, "bronze-test", params) == "CREATE_COMPLETE"
    # moto provisions the DynamoDB part of the stack for real: the ledger table exists with its index.
    table = aws.client("dynamodb").describe_table(TableName=f"{s3_bucket}-ledger")["Table"]
    assert [ix["IndexName"] for ix in table["GlobalSecondaryIndexes"]] == ["open_intents"]


def test_the_role_may_publish_exactly_the_metrics_namespace_the_job_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config([])
    statements = TEMPLATE["Resources"]["JobRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    (metrics,) = [s for s in statements if s.get("Sid") == "Metrics"]
    assert config.metrics.backend == "cloudwatch"
    # PutMetricData has no resource-level permissions: the namespace condition is what narrows it.
    assert metrics["Action"] == ["cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": config.metrics.namespace}}
