"""The deploy path: template consistent with the code, Glue arguments parsed by the CLI, deploy against moto."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from template_render import render

from streaming.adapters import aws
from streaming.cli.glue_entry import load_config
from streaming.config import ConfigError
from streaming.lakehouse.session import JOB_SPARK_CONF

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = json.loads((ROOT / "deploy" / "template.json").read_text())


def _deploy_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_script", ROOT / "deploy" / "deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as importlib's recipe does: dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


def _job_args() -> dict[str, Any]:
    return TEMPLATE["Resources"]["StreamingJob"]["Properties"]["DefaultArguments"]


def test_ledger_table_in_template_matches_create_table(aws_env: str, unique_name: str) -> None:
    from aws_fixtures import create_ledger_table

    create_ledger_table(unique_name)
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
    assert confs == JOB_SPARK_CONF  # the same Hudi/UTC/retention settings the local session factory uses


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


def test_the_archive_prefix_becomes_a_source_archive_the_job_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = render().props("StreamingJob")["DefaultArguments"]  # on by default
    config = load_config(["--source", args["--source"], "--source-archive", args["--source-archive"]])
    assert (config.source, config.source_archive) == ("s3://landing-b/fhir/encounter/", "s3://landing-b/fhir/archive/")
    # An archive inside the landing prefix would be listed again: the job refuses it at start.
    inside = render(ArchivePrefix="fhir/encounter/archive/").props("StreamingJob")["DefaultArguments"]
    with pytest.raises(ConfigError, match="must not be inside source"):
        load_config(["--source", inside["--source"], "--source-archive", inside["--source-archive"]])
    assert "--source-archive" not in render(ArchivePrefix="off").props("StreamingJob")["DefaultArguments"]


def test_the_job_registers_tables_in_the_database_the_stack_creates_and_grants() -> None:
    """The role grants the DatabaseName parameter's database; the job must be told that name, not assume it."""
    database = "lake_bronze_prod"
    rendered = _job_args()["--set"]["Fn::Sub"].replace("${DatabaseName}", database)
    config = load_config(["--set", rendered])
    assert config.tables.database == database
    statements = TEMPLATE["Resources"]["JobRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    (catalog,) = [s for s in statements if s.get("Sid") == "Catalog"]
    database_arn = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:database/${DatabaseName}"
    assert {"Fn::Sub": database_arn} in catalog["Resource"]


# moto's CloudFormation skips what it cannot provision: Glue and Athena resources, the SNS topic policy and CloudWatch
# alarms (the template tests in test_template_policy.py check those).
def _moto_cfn(test: Callable[..., None]) -> Callable[..., None]:
    """moto's CloudFormation warns about what it skips: Glue and Athena resources, the topic policy, alarms."""
    for kind in ("Glue", "Athena", "SNS..TopicPolicy", "CloudWatch..Alarm"):
        test = pytest.mark.filterwarnings(f"ignore:Tried to parse AWS..{kind}:UserWarning")(test)
    return test


# --- helpers ------------------------------------------------------------------------------------------------------


def _wheel(folder: Path, code: str, stamp: tuple[int, int, int, int, int, int] = (2026, 1, 1, 0, 0, 0)) -> Path:
    """A small stand-in wheel (the real build is tested below): `code` is its content, `stamp` its zip times."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bronze_encounter-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(zipfile.ZipInfo("streaming/__init__.py", date_time=stamp), code)
    return path


def _buckets(bucket: str) -> list[str]:
    return ["--landing-bucket", "landing-b", "--lakehouse-bucket", "lake-b", "--artifacts-bucket", bucket]


def _deploy(deploy: ModuleType, stack: str, bucket: str, wheel: Path, *extra: str, **kwargs: Any) -> int:
    """A deploy of `wheel` to `stack`, confirmed (--yes) unless `extra` asks otherwise."""
    ledger = ["--ledger-table", f"{bucket}-ledger"]
    return int(deploy.main(["--stack", stack, *_buckets(bucket), *ledger, "--wheel", str(wheel), *extra], **kwargs))


def _stack(name: str) -> dict[str, Any]:
    return aws.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]


def _params(name: str) -> dict[str, str]:
    return {p["ParameterKey"]: p["ParameterValue"] for p in _stack(name)["Parameters"]}


def _outputs(name: str) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in _stack(name).get("Outputs", [])}


def _job(name: str) -> dict[str, Any]:
    return aws.client("glue").get_job(JobName=name)["Job"]


def _runs(job: str) -> dict[str, dict[str, Any]]:
    """The job's runs by id (on moto a read can move a run on, see `glue_run_transition`)."""
    return {run["Id"]: run for run in aws.client("glue").get_job_runs(JobName=job)["JobRuns"]}


def _object_digest(uri: str) -> str:
    """The content digest of the S3 object at `uri`, computed from its bytes (not from its metadata)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / key.rsplit("/", 1)[-1]
        aws.client("s3").download_file(bucket, key, str(path))
        return str(_deploy_module().content_digest(path))


def _answer(session: boto3.session.Session, operation: str, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Answer `operation` (e.g. 'cloudformation.DescribeStacks') in the test instead of moto: a botocore before-call
    handler; `answer` gets the request's parameters and returns the parsed response (an "Error" key: a failure)."""

    def handler(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        body = params.get("body", {})  # a JSON service's serialized request, or a query service's fields
        parsed = answer(json.loads(body) if isinstance(body, bytes) and body else body or {})
        status = int(parsed.pop("_status", 400 if "Error" in parsed else 200))
        return SimpleNamespace(status_code=status, headers={}), {
            **parsed,
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    session.events.register(f"before-call.{operation}", handler)


def _calls(session: boto3.session.Session, operation: str) -> list[dict[str, Any]]:
    """The parameters of every `operation` call the session's clients make (recorded, then sent as usual)."""
    seen: list[dict[str, Any]] = []
    session.events.register(f"provide-client-params.{operation}", lambda params, **_: seen.append(dict(params)))
    return seen


def _session() -> boto3.session.Session:
    return boto3.session.Session(region_name=os.environ["AWS_REGION"])


# --- versions -----------------------------------------------------------------------------------------------------


@pytest.mark.slow  # builds the wheel
def test_a_version_is_named_by_its_content_and_uploaded_under_that_name(
    aws_env: str, s3_bucket: str, tmp_path: Path
) -> None:
    deploy = _deploy_module()
    wheel = deploy.build_wheel(tmp_path / "build")
    names = zipfile.ZipFile(wheel).namelist()
    assert "streaming/cli/glue_entry.py" in names and "streaming/pipeline/batch.py" in names
    version = deploy.local_version(wheel, tmp_path)
    assert re.fullmatch(r"[0-9a-f]{12}", version.name)
    assert re.fullmatch(r"([0-9a-f]{12}(\+dirty)?|unknown)", version.commit)
    s3 = aws.client("s3")
    uploaded = deploy.upload_version(s3, s3_bucket, "bronze-encounter/", version, dry_run=False)
    base = f"bronze-encounter/{version.name}/"
    files = (wheel.name, "glue_entry.py", "glue.toml", "template.json", "manifest.json")
    assert uploaded == {base + f: True for f in files}
    # Each object carries its content digest; uploading the same version again uploads nothing.
    assert s3.head_object(Bucket=s3_bucket, Key=base + wheel.name)["Metadata"] == {
        "content-sha256": deploy.content_digest(wheel)
    }
    assert deploy.upload_version(s3, s3_bucket, "bronze-encounter/", version, dry_run=False) == {
        base + f: False for f in files
    }
    manifest = json.loads(s3.get_object(Bucket=s3_bucket, Key=base + "manifest.json")["Body"].read())
    assert (manifest["version"], manifest["commit"], manifest["wheel"]) == (version.name, version.commit, wheel.name)
    assert manifest["files"] == dict(version.digests)
    # The template uploaded is the one deployed, so a rollback re-applies it as it was.
    stored = s3.get_object(Bucket=s3_bucket, Key=base + "template.json")["Body"].read().decode()
    assert json.loads(stored) == TEMPLATE and stored == version.template


def test_a_version_changes_with_any_of_its_four_files_and_not_with_a_rebuild(tmp_path: Path) -> None:
    deploy = _deploy_module()
    first = _wheel(tmp_path / "1", "v = 1\n")
    rebuilt = _wheel(tmp_path / "2", "v = 1\n", stamp=(2026, 6, 1, 12, 30, 0))
    changed = _wheel(tmp_path / "3", "v = 2\n")
    assert first.read_bytes() != rebuilt.read_bytes()  # as two `pip wheel` runs of one checkout differ
    assert deploy.content_digest(first) == deploy.content_digest(rebuilt) != deploy.content_digest(changed)
    names = {deploy.local_version(w, w.parent).name for w in (first, rebuilt)}
    assert len(names) == 1 and deploy.local_version(changed, changed.parent).name not in names


def test_the_template_fits_in_a_template_body() -> None:
    """deploy.py sends the template inline (TemplateBody, at most 51,200 bytes): keep it under, with room."""
    deploy = _deploy_module()
    compact = json.dumps(TEMPLATE, separators=(",", ":"))
    assert len(compact.encode()) < 0.9 * deploy.TEMPLATE_BODY_LIMIT


# --- parameters ---------------------------------------------------------------------------------------------------


def test_every_template_parameter_can_be_passed_and_unknown_ones_are_refused() -> None:
    deploy = _deploy_module()
    given = {name: str(spec.get("Default", "x")) for name, spec in TEMPLATE["Parameters"].items()}
    given |= {"ArtifactsVersion": "0123abcd4567", "PreviousVersion": "none", "ReaderPrincipal": ""}
    request, values, notes = deploy.resolve_parameters(TEMPLATE, given, {"WorkerType": "G.1X"})
    assert values == given and notes == []
    assert request == [{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()]
    with pytest.raises(deploy.DeployError) as refused:
        deploy.resolve_parameters(TEMPLATE, {**given, "Workertype": "G.2X"}, None)
    assert refused.value.code == 2 and str(refused.value).startswith("unknown parameter(s) Workertype; the template")
    # The named flags are template parameters (a renamed parameter fails here, not at a deploy).
    assert set(deploy.NAMED_PARAMETERS.values()) <= set(TEMPLATE["Parameters"])
    assert set(deploy.VERSION_PARAMETERS) <= set(TEMPLATE["Parameters"])


def test_parameters_not_passed_keep_their_previous_value_and_a_retired_value_falls_back_to_the_default() -> None:
    deploy = _deploy_module()
    previous = {name: str(spec.get("Default", "p")) for name, spec in TEMPLATE["Parameters"].items()}
    previous |= {"WorkerType": "G.2X", "GlueVersion": "5.0", "ArchivePrefix": "", "ReaderPrincipal": ""}
    previous |= {"ArtifactsVersion": "0123abcd4567", "PreviousVersion": "none"}
    request, values, notes = deploy.resolve_parameters(TEMPLATE, {"ArtifactsVersion": "89abcdef0123"}, previous)
    by_key = {r["ParameterKey"]: r for r in request}
    assert by_key["WorkerType"] == {"ParameterKey": "WorkerType", "UsePreviousValue": True}
    assert values["WorkerType"] == "G.2X"
    # Glue 5.0 is no longer allowed; an empty ArchivePrefix (the old default) is no longer a way to turn it off.
    assert by_key["GlueVersion"] == {"ParameterKey": "GlueVersion", "ParameterValue": "5.1"}
    assert by_key["ArchivePrefix"] == {"ParameterKey": "ArchivePrefix", "ParameterValue": "fhir/archive/"}
    assert notes == [
        "GlueVersion: the stack's '5.0' is no longer allowed; using the default '5.1'",
        "ArchivePrefix: the stack's '' is no longer allowed; using the default 'fhir/archive/'",
    ]
    # A new stack without a required value: one line naming it.
    with pytest.raises(deploy.DeployError) as missing:
        deploy.resolve_parameters(TEMPLATE, {"ArtifactsVersion": "0123abcd4567", "WheelName": "w.whl"}, None)
    assert str(missing.value) == (
        "no value for LandingBucket, LakehouseBucket, ArtifactsBucket: pass --param LandingBucket=..., "
        "--param LakehouseBucket=..., --param ArtifactsBucket=... (or its flag)"
    )


def test_the_change_set_is_printed_with_its_parameter_and_property_changes() -> None:
    """What DescribeChangeSet returns with IncludePropertyValues (moto gives no Details: shaped as AWS documents)."""
    deploy = _deploy_module()
    plan = deploy.Plan("deploy-1", "UPDATE")
    plan.parameters = [("WorkerType", "G.1X", "G.2X"), ("ArtifactsVersion", "0123abcd4567", "89abcdef0123")]
    old, new = "s3://a/bronze-encounter/0123abcd4567/w.whl", "s3://a/bronze-encounter/89abcdef0123/w.whl"
    plan.changes = [
        {
            "Action": "Modify",
            "LogicalResourceId": "StreamingJob",
            "ResourceType": "AWS::Glue::Job",
            "Replacement": "False",
            "Details": [
                {
                    "Target": {
                        "Attribute": "Properties",
                        "Name": "DefaultArguments",
                        "Path": "/Properties/DefaultArguments/--additional-python-modules",
                        "RequiresRecreation": "Never",
                        "BeforeValue": old,
                        "AfterValue": new,
                        "AttributeChangeType": "Modify",
                    },
                    "Evaluation": "Static",
                    "ChangeSource": "ParameterReference",
                },
                {"Target": {"Attribute": "Properties", "Name": "WorkerType", "RequiresRecreation": "Never"}},
            ],
        },
        {"Action": "Add", "LogicalResourceId": "Dashboard", "ResourceType": "AWS::CloudWatch::Dashboard"},
        {
            "Action": "Modify",
            "LogicalResourceId": "SecurityConfiguration",
            "ResourceType": "AWS::Glue::SecurityConfiguration",
            "Replacement": "True",
        },
    ]
    assert deploy.plan_lines(plan) == [
        "parameters:",
        "  WorkerType        G.1X -> G.2X",
        "  ArtifactsVersion  0123abcd4567 -> 89abcdef0123",
        "resources:",
        "  Modify   StreamingJob AWS::Glue::Job",
        f"           /Properties/DefaultArguments/--additional-python-modules: {old} -> {new}",
        "           Properties.WorkerType (recreation: Never)",
        "  Add      Dashboard AWS::CloudWatch::Dashboard",
        "  Modify   SecurityConfiguration AWS::Glue::SecurityConfiguration (replacement: True)",
    ]


# --- the deploy against moto --------------------------------------------------------------------------------------


@_moto_cfn
@pytest.mark.slow  # builds the wheel
def test_the_cli_dry_run_prints_the_change_set_and_uploads_nothing(
    aws_env: str, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy = _deploy_module()
    stack = f"cli-{s3_bucket}"[:120]
    assert deploy.main(["--stack", stack, *_buckets(s3_bucket), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    (first,) = [line for line in out if line.startswith(f"stack {stack}: version none -> ")]
    version = first.split(" -> ")[1].split(" ")[0]
    assert "  Add      LedgerTable AWS::DynamoDB::Table" in out
    assert f"upload   s3://{s3_bucket}/bronze-encounter/{version}/glue_entry.py" in out
    assert out[-2] == f"job {stack}: would restart (version none -> {version})"
    assert out[-1].startswith(f"stack {stack}: dry run, ") and out[-1].endswith(", 5 upload(s); nothing deployed")
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket=s3_bucket)  # no artifact uploaded
    live = [s["StackName"] for s in aws.client("cloudformation").list_stacks()["StackSummaries"]]
    assert stack not in {s["StackName"] for s in aws.client("cloudformation").describe_stacks()["Stacks"]}
    assert live.count(stack) <= 1  # at most the deleted REVIEW_IN_PROGRESS stack of the change set


@_moto_cfn
@pytest.mark.slow  # deploys against moto, seconds each
def test_a_new_stack_is_created_from_the_reviewed_change_set_records_its_version_and_starts_its_first_run(
    aws_env: str,
    s3_bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cloudformation_like_aws: None,
) -> None:
    deploy = _deploy_module()
    stack = f"new-{s3_bucket}"[:120]
    wheel = _wheel(tmp_path, "v = 1\n")
    version = deploy.local_version(wheel, tmp_path / "v").name
    session = _session()
    executed = _calls(session, "cloudformation.ExecuteChangeSet")
    created = _calls(session, "cloudformation.CreateChangeSet")
    described = _calls(session, "cloudformation.DescribeChangeSet")
    assert _deploy(deploy, stack, s3_bucket, wheel, "--yes", session=session) == 0
    # The change set is read with its property values (the waiter's polls aside).
    assert [d["IncludePropertyValues"] for d in described if "IncludePropertyValues" in d] == [True]
    out = capsys.readouterr().out.splitlines()
    base = f"s3://{s3_bucket}/bronze-encounter/{version}/"
    assert out[0].startswith(f"stack {stack}: version none -> {version} (commit ")
    assert [line for line in out if line.startswith("upload")] == [
        f"upload   {base}{name}"
        for name in (wheel.name, "glue_entry.py", "glue.toml", "template.json", "manifest.json")
    ]
    assert (
        "  Add      LedgerTable AWS::DynamoDB::Table" in out
        and "  Add      ReaderPolicy AWS::IAM::ManagedPolicy" in out
    )
    # The change set printed is the one executed.
    assert [c["ChangeSetName"] for c in executed] == [c["ChangeSetName"] for c in created]
    assert created[0]["ChangeSetType"] == "CREATE"
    ((run_id, run),) = _runs(stack).items()
    assert out[-4:] == [
        f"stack {stack}: CREATE_COMPLETE, version {version}",
        f"job {stack}: restarting (version none -> {version})",
        f"job {stack}: no run to stop",
        f"job {stack}: started run {run_id}, resuming from s3://lake-b/_checkpoints/{stack}/bronze/bronze_encounter/",
    ]
    # The stack records the version (parameter, output, tag); the job runs its artifacts.
    assert _params(stack)["ArtifactsVersion"] == _outputs(stack)["Version"] == version
    assert _outputs(stack)["PreviousVersion"] == "none"
    tags = {t["Key"]: t["Value"] for t in _stack(stack)["Tags"]}
    assert tags["bronze-encounter:version"] == version and tags["bronze-encounter:commit"]
    job = _job(stack)
    assert run["Arguments"] == job["DefaultArguments"]  # no override: the job's own arguments, its checkpoint
    assert job["DefaultArguments"]["--additional-python-modules"] == base + wheel.name
    assert job["Command"]["ScriptLocation"] == base + "glue_entry.py"
    assert job["DefaultArguments"]["--extra-files"] == base + "glue.toml"
    assert _object_digest(base + wheel.name) == deploy.content_digest(wheel)

    # moto provisions the rest for real: the ledger table with its index, the key, the topic, the rule, the
    # analysts' managed policy and the dashboard.
    outputs = _check_provisioned(stack, s3_bucket)

    # Deployed without an archive option, the job archives, and its role has the move's grants.
    _check_archive_grants(job, outputs)


def _check_provisioned(stack: str, s3_bucket: str) -> dict[str, str]:
    """What a new stack provisions beside the job (moto makes it for real); the stack's outputs."""
    table = aws.client("dynamodb").describe_table(TableName=f"{s3_bucket}-ledger")["Table"]
    assert [ix["IndexName"] for ix in table["GlobalSecondaryIndexes"]] == ["open_intents"]
    outputs = _outputs(stack)
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in aws.client("kms").list_aliases()["Aliases"]}
    assert outputs["KeyArn"].endswith(f":key/{aliases[f'alias/{stack}']}")
    topic = aws.client("sns").get_topic_attributes(TopicArn=outputs["AlarmTopicArn"])["Attributes"]
    assert topic["KmsMasterKeyId"] == outputs["KeyArn"]
    events = aws.client("events")
    (rule,) = [r for r in events.list_rules()["Rules"] if r["Name"].startswith(f"{stack}-JobStateRule")]
    assert json.loads(rule["EventPattern"])["detail"] == {"jobName": [stack], "state": ["FAILED", "TIMEOUT", "STOPPED"]}
    policy = aws.client("iam").get_policy(PolicyArn=outputs["ReaderPolicyArn"])["Policy"]
    document = aws.client("iam").get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])
    statements = document["PolicyVersion"]["Document"]["Statement"]
    assert [s["Sid"] for s in statements] == [
        "ListWarehouse",
        "ReadWarehouse",
        "LocateLakehouse",
        "DecryptThroughS3",
        "Catalog",
        "Workgroup",
        "ListResults",
        "WriteResults",
    ]
    dashboard = json.loads(aws.client("cloudwatch").get_dashboard(DashboardName=stack)["DashboardBody"])
    assert {w["type"] for w in dashboard["widgets"]} == {"metric", "alarm"}
    return outputs


def _check_archive_grants(job: dict[str, Any], outputs: dict[str, str]) -> None:
    """The job archives to the default prefix, and its role may move files there."""
    assert job["DefaultArguments"]["--source-archive"] == "s3://landing-b/fhir/archive/"
    role = outputs["RoleArn"].rsplit("/", 1)[-1]
    inline = aws.client("iam").get_role_policy(RoleName=role, PolicyName="bronze-encounter")["PolicyDocument"]
    # moto keeps an inline policy CloudFormation made as the Python text of its dict.
    inline = ast.literal_eval(inline) if isinstance(inline, str) else inline
    sids = {s["Sid"] for s in inline["Statement"]}
    assert {"ListArchive", "ArchiveRoot", "WriteArchive", "MoveOutOfLanding", "LandingFolderMarkers"} <= sids
    (root,) = [s for s in inline["Statement"] if s["Sid"] == "ArchiveRoot"]
    assert root["Resource"] == ["arn:aws:s3:::landing-b/fhir/archive"]


@_moto_cfn
@pytest.mark.slow  # deploys against moto, seconds each
def test_a_value_changed_outside_the_deploy_survives_a_deploy_that_does_not_pass_it(
    aws_env: str,
    s3_bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cloudformation_like_aws: None,
) -> None:
    deploy = _deploy_module()
    stack = f"keep-{s3_bucket}"[:120]
    assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path / "a", "v = 1\n"), "--yes", "--no-restart") == 0
    # An operator raises the worker type in the console: a change set on the current template, WorkerType changed.
    cfn = aws.client("cloudformation")
    kept = [{"ParameterKey": k, "UsePreviousValue": True} for k in _params(stack) if k != "WorkerType"]
    changed = [{"ParameterKey": "WorkerType", "ParameterValue": "G.2X"}, *kept]
    console = {"StackName": stack, "ChangeSetName": "console", "UsePreviousTemplate": True, "Parameters": changed}
    cfn.create_change_set(**console, ChangeSetType="UPDATE", Capabilities=["CAPABILITY_IAM"])
    cfn.execute_change_set(StackName=stack, ChangeSetName="console")
    assert _params(stack)["WorkerType"] == "G.2X"
    capsys.readouterr()

    # New code, deployed without naming WorkerType: it keeps G.2X.
    session = _session()
    created = _calls(session, "cloudformation.CreateChangeSet")
    assert (
        _deploy(deploy, stack, s3_bucket, _wheel(tmp_path / "b", "v = 2\n"), "--yes", "--no-restart", session=session)
        == 0
    )
    (request,) = created
    sent = {p["ParameterKey"]: p for p in request["Parameters"]}
    assert sent["WorkerType"] == {"ParameterKey": "WorkerType", "UsePreviousValue": True}
    assert sent["LandingBucket"] == {"ParameterKey": "LandingBucket", "ParameterValue": "landing-b"}  # given again
    assert sent["AlarmEmail"] == {"ParameterKey": "AlarmEmail", "UsePreviousValue": True}
    assert _params(stack)["WorkerType"] == "G.2X" and _job(stack)["WorkerType"] == "G.2X"
    out = capsys.readouterr().out.splitlines()
    assert "parameters:" in out and not [line for line in out if line.lstrip().startswith("WorkerType")]

    # Passing it changes it, and the change is printed before it is applied.
    assert (
        _deploy(deploy, stack, s3_bucket, _wheel(tmp_path / "b", "v = 2\n"), "--yes", "--param", "WorkerType=G.1X") == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[out.index("parameters:") + 1].split() == ["WorkerType", "G.2X", "->", "G.1X"]
    assert _params(stack)["WorkerType"] == "G.1X" and _job(stack)["WorkerType"] == "G.1X"
    # An update needs no bucket flags: every value not passed is the stack's.
    assert deploy.main(["--stack", stack, "--wheel", str(_wheel(tmp_path / "b", "v = 2\n")), "--yes"]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"stack {stack}: nothing to deploy",
        f"job {stack}: not restarted (nothing changed)",
    ]


@_moto_cfn
@pytest.mark.slow  # deploys against moto, seconds each
def test_rollback_points_the_job_at_the_previous_artifacts_and_restarts_it_there(
    aws_env: str,
    s3_bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cloudformation_like_aws: None,
    glue_run_transition: Callable[[dict[str, Any]], None],
) -> None:
    glue_run_transition({"progression": "immediate"})  # a run ends as soon as it is read: none active at a deploy
    deploy = _deploy_module()
    stack = f"rb-{s3_bucket}"[:120]
    one, two = _wheel(tmp_path / "1", "v = 1\n"), _wheel(tmp_path / "2", "v = 2\n")
    v1, v2 = deploy.local_version(one, tmp_path / "1").name, deploy.local_version(two, tmp_path / "2").name
    assert _deploy(deploy, stack, s3_bucket, one, "--yes") == 0
    assert _deploy(deploy, stack, s3_bucket, two, "--yes") == 0
    assert (_outputs(stack)["Version"], _outputs(stack)["PreviousVersion"]) == (v2, v1)
    capsys.readouterr()

    assert deploy.main(["--stack", stack, "--rollback", "--yes"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"stack {stack}: version {v2} -> {v1} (commit ")
    assert not [line for line in out if line.startswith(("upload", "same"))]  # nothing built or uploaded
    wheel_uri = _job(stack)["DefaultArguments"]["--additional-python-modules"]
    assert wheel_uri == f"s3://{s3_bucket}/bronze-encounter/{v1}/{one.name}"
    assert _object_digest(wheel_uri) == deploy.content_digest(one)  # the first version's code, byte for byte
    (newest,) = [r for r in _runs(stack).values() if r["Arguments"]["--additional-python-modules"] == wheel_uri][-1:]
    assert out[-1] == f"job {stack}: started run {newest['Id']}, resuming from {newest['Arguments']['--checkpoint']}"
    assert (_outputs(stack)["Version"], _outputs(stack)["PreviousVersion"]) == (v1, v2)
    assert {t["Key"]: t["Value"] for t in _stack(stack)["Tags"]}["bronze-encounter:version"] == v1

    # make deploy VERSION=... deploys any version uploaded before; --list-versions shows them.
    assert deploy.main(["--stack", stack, "--version", v2, "--yes", "--no-restart"]) == 0
    assert _params(stack)["ArtifactsVersion"] == v2
    capsys.readouterr()
    assert deploy.main(["--stack", stack, "--list-versions"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == [v1, v2] and listed[1].endswith("<- running")
    assert deploy.main(["--stack", stack, "--version", "ffffffffffff", "--yes"]) == 2
    assert "no version ffffffffffff under" in capsys.readouterr().err


@_moto_cfn
@pytest.mark.slow  # deploys against moto, seconds each
def test_a_failed_update_prints_the_stacks_failure_events_and_the_job_keeps_its_version(
    aws_env: str,
    s3_bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cloudformation_like_aws: None,
) -> None:
    deploy = _deploy_module()
    stack = f"fail-{s3_bucket}"[:120]
    assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path / "1", "v = 1\n"), "--yes", "--no-restart") == 0
    before = _job(stack)["DefaultArguments"]
    capsys.readouterr()
    # CloudFormation starts the update, a resource fails, and the stack rolls back (answered here: moto never fails).
    session, now, described = _session(), datetime.now(UTC), _stack(stack)
    newest_first = [
        (stack, "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_COMPLETE", ""),
        ("Dashboard", "AWS::CloudWatch::Dashboard", "UPDATE_FAILED", "Resource update cancelled"),
        ("StreamingJob", "AWS::Glue::Job", "UPDATE_FAILED", 'Resource handler returned message: "Worker type"\n"G.9X"'),
        ("StreamingJob", "AWS::Glue::Job", "UPDATE_IN_PROGRESS", ""),
    ]
    events = [
        {"StackId": "s", "EventId": str(i), "StackName": stack, "Timestamp": now, "LogicalResourceId": logical,
         "ResourceType": kind, "ResourceStatus": status, **({"ResourceStatusReason": why} if why else {})}
        for i, (logical, kind, status, why) in enumerate(newest_first)
    ]  # fmt: skip
    executed: list[dict[str, Any]] = []

    def stacks(_: dict[str, Any]) -> dict[str, Any]:
        return {"Stacks": [{**described, "StackStatus": "UPDATE_ROLLBACK_COMPLETE"} if executed else described]}

    _answer(session, "cloudformation.ExecuteChangeSet", lambda params: executed.append(params) or {})
    _answer(session, "cloudformation.DescribeStacks", stacks)
    _answer(session, "cloudformation.DescribeStackEvents", lambda _: {"StackEvents": events})
    assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path / "2", "v = 2\n"), "--yes", session=session) == 1
    assert capsys.readouterr().err.splitlines() == [  # one block, the cause first
        f"stack {stack}: UPDATE_ROLLBACK_COMPLETE: the update failed and was rolled back: the job still runs the "
        "version it ran before",
        '  StreamingJob AWS::Glue::Job UPDATE_FAILED: Resource handler returned message: "Worker type" "G.9X"',
        "  Dashboard AWS::CloudWatch::Dashboard UPDATE_FAILED: Resource update cancelled",
    ]
    # The new version's files were uploaded under their own keys; the job still names the old ones, and no run
    # was started on the half-deployed stack.
    assert _job(stack)["DefaultArguments"] == before and _runs(stack) == {}


@_moto_cfn
def test_a_stack_left_in_rollback_complete_says_to_delete_it_and_creates_nothing(
    aws_env: str, s3_bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy = _deploy_module()
    stack = f"rc-{s3_bucket}"[:120]
    session = _session()
    created = _calls(session, "cloudformation.CreateChangeSet")
    now = datetime.now(UTC)
    described = {"StackName": stack, "StackId": "s", "CreationTime": now, "StackStatus": "ROLLBACK_COMPLETE"}
    failed = {
        "StackId": "s", "EventId": "1", "StackName": stack, "Timestamp": now, "LogicalResourceId": "LedgerTable",
        "ResourceType": "AWS::DynamoDB::Table", "ResourceStatus": "CREATE_FAILED",
        "ResourceStatusReason": "bronze_encounter_ledger already exists",
    }  # fmt: skip
    _answer(session, "cloudformation.DescribeStacks", lambda _: {"Stacks": [described]})
    _answer(session, "cloudformation.DescribeStackEvents", lambda _: {"StackEvents": [failed]})
    assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path, "v = 1\n"), "--yes", session=session) == 4
    assert capsys.readouterr().err.splitlines() == [
        f"stack {stack} is ROLLBACK_COMPLETE: its creation failed and was rolled back, so it cannot be updated: "
        f"delete it (python deploy/ops.py delete-stack --stack {stack}; the ledger, database and key are retained) "
        "and deploy again",
        "  LedgerTable AWS::DynamoDB::Table CREATE_FAILED: bronze_encounter_ledger already exists",
    ]
    assert created == [] and "Contents" not in aws.client("s3").list_objects_v2(Bucket=s3_bucket)


@_moto_cfn
def test_access_denied_is_not_read_as_a_missing_stack(
    aws_env: str, s3_bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy = _deploy_module()
    stack = f"ad-{s3_bucket}"[:120]
    session = _session()
    created = _calls(session, "cloudformation.CreateChangeSet")
    message = "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: cloudformation:DescribeStacks"
    _answer(
        session,
        "cloudformation.DescribeStacks",
        lambda _: {"_status": 403, "Error": {"Code": "AccessDenied", "Message": message}},
    )
    assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path, "v = 1\n"), "--yes", session=session) == 3
    assert capsys.readouterr().err.splitlines() == [
        f"stack {stack}: AWS refused DescribeStacks (AccessDenied): {message}",
        "Check the credentials (--profile or AWS_PROFILE), the region (--region or AWS_REGION) and that the deployer "
        "may use CloudFormation, S3, STS and Glue (README, Deploy to AWS)",
    ]
    assert created == []  # not read as "no such stack, create one"


def test_no_credentials_exit_3_with_one_message_and_no_traceback(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "none").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance metadata lookup (and its timeouts)
    deploy = _deploy_module()
    assert deploy.main(["--stack", "s", "--artifacts-bucket", "a", "--wheel", str(_wheel(tmp_path, "v\n"))]) == 3
    err = capsys.readouterr().err
    assert err.startswith("stack s: NoCredentialsError: Unable to locate credentials\n") and "Traceback" not in err
    assert deploy.main(["--stack", "s", "--profile", "nope"]) == 3
    assert capsys.readouterr().err.startswith("stack s: ProfileNotFound: The config profile (nope) could not be found")


@_moto_cfn
@pytest.mark.slow  # deploys against moto, seconds each
def test_region_and_profile_work_as_in_the_aws_cli(
    aws_env: str, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cloudformation_like_aws: None
) -> None:
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    config.write_text("[profile ops]\nregion = eu-west-1\n")
    credentials.write_text("[ops]\naws_access_key_id = ops-key\naws_secret_access_key = ops-secret\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    deploy = _deploy_module()
    stack = f"pr-{s3_bucket}"[:120]
    wheel = _wheel(tmp_path, "v = 1\n")
    assert _deploy(deploy, stack, s3_bucket, wheel, "--profile", "ops", "--yes", "--no-restart") == 0
    ops = boto3.session.Session(profile_name="ops")
    assert (
        ops.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    )
    # --region wins over the profile's region, as in the AWS CLI.
    assert (
        _deploy(
            deploy, stack, s3_bucket, wheel, "--profile", "ops", "--region", "eu-central-1", "--yes", "--no-restart"
        )
        == 0
    )
    elsewhere = boto3.session.Session(profile_name="ops", region_name="eu-central-1").client("cloudformation")
    assert elsewhere.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # the fixture's region for the check: none there
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(ClientError, match="does not exist"):
        boto3.session.Session(region_name="us-west-2").client("cloudformation").describe_stacks(StackName=stack)


@_moto_cfn
@pytest.mark.slow  # deploys against moto, seconds each
def test_a_change_set_not_confirmed_is_deleted_and_changes_nothing(
    aws_env: str, s3_bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], cloudformation_like_aws: None
) -> None:
    deploy = _deploy_module()
    stack = f"nc-{s3_bucket}"[:120]
    asked: list[str] = []

    def decline(question: str) -> bool:
        asked.append(question)
        return False

    # A new stack: declined, nothing is left, not even the empty stack a CREATE change set makes.
    assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path / "1", "v = 1\n"), confirm=decline) == 5
    assert capsys.readouterr().err.strip() == (
        f"stack {stack}: not confirmed; the change set is deleted and nothing changed (--yes executes without asking)"
    )
    assert (
        len(asked) == 1
        and asked[0].startswith("Execute change set deploy-")
        and asked[0].endswith(f"on stack {stack}?")
    )
    assert stack not in {s["StackName"] for s in aws.client("cloudformation").describe_stacks()["Stacks"]}
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket=s3_bucket)  # uploads wait for the answer
    # An existing stack: declined, the stack keeps its version and no change set is left behind.
    assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path / "1", "v = 1\n"), "--yes", "--no-restart") == 0
    running = _params(stack)["ArtifactsVersion"]
    assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path / "2", "v = 2\n"), confirm=decline) == 5
    assert _params(stack)["ArtifactsVersion"] == running
    summaries = aws.client("cloudformation").list_change_sets(StackName=stack)["Summaries"]
    assert [c for c in summaries if c["StackName"] == stack and c["ExecutionStatus"] == "AVAILABLE"] == []
    # Without a terminal and without --yes, nothing is asked and nothing changes.
    monkeypatch_stdin = SimpleNamespace(isatty=lambda: False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stdin", monkeypatch_stdin)
        assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path / "2", "v = 2\n")) == 5


# --- restart after a deploy --------------------------------------------------------------------------------------


@_moto_cfn
@pytest.mark.slow  # deploys against moto, seconds each
def test_new_code_restarts_the_job_on_its_checkpoint_and_an_unchanged_deploy_leaves_it_running(
    aws_env: str,
    s3_bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cloudformation_like_aws: None,
    glue_run_transition: Callable[[dict[str, Any]], None],
) -> None:
    glue_run_transition({"progression": "immediate"})  # a run ends as soon as it is read: none active at a deploy
    deploy = _deploy_module()
    stack = f"rs-{s3_bucket}"[:120]
    assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path / "a", "v = 1\n"), "--yes") == 0
    (first,) = _runs(stack)
    capsys.readouterr()

    # The same code rebuilt (other zip times): the same version, nothing uploaded, no new run.
    assert (
        _deploy(deploy, stack, s3_bucket, _wheel(tmp_path / "b", "v = 1\n", stamp=(2026, 2, 2, 2, 2, 2)), "--yes") == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("upload")] == []
    assert out[-2:] == [f"stack {stack}: nothing to deploy", f"job {stack}: not restarted (nothing changed)"]
    assert list(_runs(stack)) == [first]

    # New code: a new version, and one run starts, with the job's own arguments, so on the same checkpoint.
    wheel = _wheel(tmp_path / "c", "v = 2\n")
    v1, v2 = _params(stack)["ArtifactsVersion"], deploy.local_version(wheel, tmp_path / "v").name
    assert _deploy(deploy, stack, s3_bucket, wheel, "--yes") == 0
    out = capsys.readouterr().out.splitlines()
    assert f"upload   s3://{s3_bucket}/bronze-encounter/{v2}/bronze_encounter-0.1.0-py3-none-any.whl" in out
    runs = _runs(stack)
    (second,) = set(runs) - {first}
    checkpoint = f"s3://lake-b/_checkpoints/{stack}/bronze/bronze_encounter/"
    assert out[-3:] == [
        f"job {stack}: restarting (version {v1} -> {v2})",
        f"job {stack}: no run to stop",
        f"job {stack}: started run {second}, resuming from {checkpoint}",
    ]
    assert runs[second]["Arguments"] == _job(stack)["DefaultArguments"]
    assert runs[first]["Arguments"]["--checkpoint"] == runs[second]["Arguments"]["--checkpoint"] == checkpoint

    # --no-restart ships the new code and leaves the runs alone.
    assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path / "d", "v = 3\n"), "--yes", "--no-restart") == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"job {stack}: not restarted (--no-restart)"
    assert set(_runs(stack)) == {first, second}


@_moto_cfn
@pytest.mark.slow  # deploys against moto, seconds each
def test_a_running_run_is_stopped_first_then_one_run_starts_and_none_when_the_stop_fails(
    aws_env: str,
    s3_bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cloudformation_like_aws: None,
    glue_run_transition: Callable[[dict[str, Any]], None],
) -> None:
    deploy = _deploy_module()
    stack = f"rr-{s3_bucket}"[:120]
    wheel = _wheel(tmp_path, "v = 1\n")
    glue_run_transition({"progression": "manual", "times": 1})  # every read moves a run one state on...
    assert _deploy(deploy, stack, s3_bucket, wheel, "--yes") == 0
    (run_id,) = _runs(stack)  # ...so this read moves the first run STARTING -> RUNNING...
    glue_run_transition({"progression": "manual", "times": 10**9})  # ...where it now stays
    assert {rid: run["JobRunState"] for rid, run in _runs(stack).items()} == {run_id: "RUNNING"}
    capsys.readouterr()

    # moto 5.2.5 does not implement BatchStopJobRun (its server answers 500): a stop Glue refuses starts nothing.
    assert _deploy(deploy, stack, s3_bucket, wheel, "--yes", "--restart") == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == f"job {stack}: restarting (--restart)"
    assert f"job {stack}: BatchStopJobRun of ['{run_id}'] failed: An error occurred (500)" in captured.err
    assert {rid: run["JobRunState"] for rid, run in _runs(stack).items()} == {run_id: "RUNNING"}

    # Glue accepts the stop (answered here, as Glue does): the run ends STOPPED in moto, and then one new run starts.
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.glue.models import glue_backends

    session = _session()
    stops: list[dict[str, Any]] = []

    def stop(params: dict[str, Any]) -> dict[str, Any]:
        stops.append(params)
        for rid in params["JobRunIds"]:
            glue_backends[DEFAULT_ACCOUNT_ID][session.region_name].get_job_run(stack, rid).status = "STOPPED"
        return {"SuccessfulSubmissions": [{"JobName": stack, "JobRunId": r} for r in params["JobRunIds"]], "Errors": []}

    _answer(session, "glue.BatchStopJobRun", stop)
    # What the deploy asked Glue after the stop, in order: each state it read, and when it started the new run.
    seen: list[str] = []
    session.events.register(
        "after-call.glue.GetJobRun", lambda parsed, **_: seen.append(parsed["JobRun"]["JobRunState"])
    )
    session.events.register("before-call.glue.StartJobRun", lambda **_: seen.append("StartJobRun"))
    assert _deploy(deploy, stack, s3_bucket, wheel, "--yes", "--restart", "--stop-timeout", "30", session=session) == 0
    out = capsys.readouterr().out.splitlines()
    assert stops == [{"JobName": stack, "JobRunIds": [run_id]}]
    assert seen == ["STOPPED", "StartJobRun"], "the new run must start only once the stopped one has ended"
    runs = _runs(stack)
    (new_run,) = set(runs) - {run_id}
    checkpoint = f"s3://lake-b/_checkpoints/{stack}/bronze/bronze_encounter/"
    assert out[-2:] == [
        f"job {stack}: stopped run(s) {run_id}",
        f"job {stack}: started run {new_run}, resuming from {checkpoint}",
    ]
    assert {rid: run["JobRunState"] for rid, run in runs.items() if rid != new_run} == {run_id: "STOPPED"}
    assert runs[run_id]["Arguments"]["--checkpoint"] == runs[new_run]["Arguments"]["--checkpoint"] == checkpoint


def test_waiting_for_stopped_runs_polls_glue_until_they_end_or_times_out(
    aws_env: str, unique_name: str, glue_run_transition: Callable[[dict[str, Any]], None]
) -> None:
    deploy = _deploy_module()
    job = render(stack=unique_name, JobName=unique_name).props("StreamingJob")
    glue = aws.client("glue")
    glue.create_job(Name=job["Name"], Role=job["Role"], Command=job["Command"], GlueVersion=job["GlueVersion"])
    glue_run_transition({"progression": "manual", "times": 1})  # reads see STARTING -> RUNNING -> SUCCEEDED
    ends = glue.start_job_run(JobName=unique_name)["JobRunId"]
    # The first poll sees RUNNING, which is not an end: only the second (SUCCEEDED) returns.
    assert deploy.wait_until_finished(glue, unique_name, [ends], timeout_seconds=60, poll_seconds=0.01) == {
        ends: "SUCCEEDED"
    }
    glue_run_transition({"progression": "manual", "times": 10**9})  # a run that never leaves STARTING
    stuck = glue.start_job_run(JobName=unique_name)["JobRunId"]
    with pytest.raises(deploy.JobStopTimedOut) as timed_out:
        deploy.wait_until_finished(glue, unique_name, [stuck], timeout_seconds=0.05, poll_seconds=0.01)
    assert str(timed_out.value) == (
        f"job {unique_name}: run(s) {{'{stuck}': 'STARTING'}} not finished after 0.05 s; no new run started"
    )


@_moto_cfn
def test_a_restart_glue_refuses_exits_1_naming_the_job_with_the_stack_deployed(
    aws_env: str, s3_bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy = _deploy_module()
    stack = f"nj-{s3_bucket}"[:120]  # without the fixture, moto's CloudFormation creates no Glue job
    assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path, "v = 1\n"), "--yes") == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-2].startswith(f"stack {stack}: CREATE_COMPLETE, version ")
    err = captured.err.splitlines()
    assert err[0].startswith(f"job {stack}: An error occurred (EntityNotFoundException)")
    assert err[-1] == f"job {stack}: the stack is deployed, the job not restarted (rerun with --restart)"


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


def test_make_deploy_passes_what_it_is_given_and_nothing_else() -> None:
    """make deploy VERSION=... (and the rest) reach deploy.py as its flags; unset ones are not passed at all."""

    def command(*assignments: str) -> list[str]:
        done = subprocess.run(["make", "-n", "-s", "deploy", *assignments], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.replace("\\\n", " ").split()

    assert command("STACK=s", "VERSION=0123abcd4567", "YES=1", "PROFILE=ops")[1:] == [
        "deploy/deploy.py", "--stack", "s", "--version", "0123abcd4567", "--yes", "--profile", "ops",
    ]  # fmt: skip
    assert command("ROLLBACK=1", "REGION=eu-west-1")[1:] == [
        "deploy/deploy.py", "--stack", "bronze-encounter", "--rollback", "--region", "eu-west-1",
    ]  # fmt: skip
    buckets = command("LANDING_BUCKET=l", "LAKEHOUSE_BUCKET=h", "ARTIFACTS_BUCKET=a", "DRY_RUN=1")
    assert buckets[4:] == ["--landing-bucket", "l", "--lakehouse-bucket", "h", "--artifacts-bucket", "a", "--dry-run"]
