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
    params = TEMPLATE["Parameters"]
    assert job["Command"]["Name"] == {"Ref": "JobCommand"} and params["JobCommand"]["Default"] == "gluestreaming"
    assert job["GlueVersion"] == {"Ref": "GlueVersion"} and params["GlueVersion"]["Default"] == "5.1"
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


# moto's CloudFormation skips what it cannot provision: Glue resources, the SNS topic policy and CloudWatch alarms
# (the template tests in test_template_policy.py check those).
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..Glue:UserWarning")
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..SNS..TopicPolicy:UserWarning")
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..CloudWatch..Alarm:UserWarning")
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

    # The stack's own KMS key exists and encrypts the alarm topic; the job-state rule notifies that topic.
    outputs = {
        o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName="bronze-test")["Stacks"][0]["Outputs"]
    }
    # moto keeps a CloudFormation-made key's policy as a dict, so DescribeKey fails there; its alias names it.
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in aws.client("kms").list_aliases()["Aliases"]}
    assert outputs["KeyArn"].endswith(f":key/{aliases['alias/bronze-encounter']}")
    # (moto's CloudFormation drops the table's SSESpecification: test_template_policy.py checks the key.)
    topic = aws.client("sns").get_topic_attributes(TopicArn=outputs["AlarmTopicArn"])["Attributes"]
    assert topic["KmsMasterKeyId"] == outputs["KeyArn"]
    events = aws.client("events")
    (rule,) = [r for r in events.list_rules()["Rules"] if "JobStateRule" in r["Name"]]
    assert json.loads(rule["EventPattern"])["detail"] == {
        "jobName": ["bronze-encounter"],
        "state": ["FAILED", "TIMEOUT", "STOPPED"],
    }
    targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert [t["Arn"] for t in targets] == [outputs["AlarmTopicArn"]]


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


@pytest.mark.filterwarnings("ignore:Tried to parse AWS..Glue:UserWarning")
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..SNS..TopicPolicy:UserWarning")
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..CloudWatch..Alarm:UserWarning")
def test_dry_run_lists_the_change_set_and_creates_nothing(aws_env: str, unique_name: str) -> None:
    deploy = _deploy_module()
    cfn = aws.client("cloudformation")
    stack = f"dry-{unique_name}"[:120]
    params = {
        "JobName": "dry-job",
        "LandingBucket": "landing-b",
        "LakehouseBucket": "lake-b",
        "ArtifactsBucket": "artifacts-b",
        "WheelName": "bronze_encounter-0.1.0-py3-none-any.whl",
        "LedgerTableName": f"{unique_name}-ledger",
    }
    changes = deploy.plan_changes(cfn, stack, params)
    by_resource = {c["resource"]: (c["action"], c["type"]) for c in changes}
    assert by_resource["LedgerTable"] == ("Add", "AWS::DynamoDB::Table")
    assert by_resource["Key"] == ("Add", "AWS::KMS::Key")
    assert by_resource["JobStateRule"] == ("Add", "AWS::Events::Rule")
    # (moto lists conditional resources regardless of their condition, so the change set is not compared whole.)
    tables = aws.client("dynamodb").list_tables()["TableNames"]
    assert f"{unique_name}-ledger" not in tables
    live = [s["StackName"] for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    assert stack not in live


@pytest.mark.filterwarnings("ignore:Tried to parse AWS..Glue:UserWarning")
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..SNS..TopicPolicy:UserWarning")
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..CloudWatch..Alarm:UserWarning")
def test_the_cli_dry_run_prints_the_changes_and_uploads_nothing(
    aws_env: str, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy = _deploy_module()
    stack = f"cli-{s3_bucket}"[:120]
    argv = ["--stack", stack, "--landing-bucket", "landing-b", "--lakehouse-bucket", "lake-b"]
    assert deploy.main([*argv, "--artifacts-bucket", s3_bucket, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "Add      LedgerTable AWS::DynamoDB::Table" in out
    assert out[-1].startswith(f"stack {stack}: dry run, ") and out[-1].endswith("nothing deployed")
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket=s3_bucket)  # no artifact uploaded
    assert stack not in {s["StackName"] for s in aws.client("cloudformation").describe_stacks()["Stacks"]}


@pytest.mark.filterwarnings("ignore:Tried to parse AWS..Glue:UserWarning")
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..SNS..TopicPolicy:UserWarning")
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..CloudWatch..Alarm:UserWarning")
def test_the_cli_prints_the_changes_then_uploads_and_creates_the_stack(
    aws_env: str, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy = _deploy_module()
    stack = f"cli-{s3_bucket}"[:120]
    argv = ["--stack", stack, "--landing-bucket", "landing-b", "--lakehouse-bucket", "lake-b"]
    assert deploy.main([*argv, "--artifacts-bucket", s3_bucket, "--ledger-table", f"{s3_bucket}-ledger"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "Add      LedgerTable AWS::DynamoDB::Table" in out
    assert out[-1] == f"stack {stack}: CREATE_COMPLETE"
    keys = {o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert {"bronze-encounter/glue_entry.py", "bronze-encounter/glue.toml"} < keys
    assert aws.client("dynamodb").describe_table(TableName=f"{s3_bucket}-ledger")["Table"]["TableStatus"] == "ACTIVE"
