"""The deploy path: template consistent with the code, Glue arguments parsed by the CLI, deploy against moto."""

from __future__ import annotations

import importlib.util
import json
import sys
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from template_render import render

from streaming import aws
from streaming.config import ConfigError
from streaming.glue_entry import load_config
from streaming.session import JOB_SPARK_CONF

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
    args = render().props("StreamingJob")["DefaultArguments"]  # on by default (issue 33)
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


@_moto_cfn
@pytest.mark.slow  # builds the wheel
def test_deploy_uploads_artifacts_and_creates_the_stack(aws_env: str, s3_bucket: str, tmp_path: Path) -> None:
    deploy = _deploy_module()
    wheel = deploy.build_wheel(tmp_path)
    s3 = aws.client("s3")
    changed = deploy.upload_artifacts(s3, s3_bucket, "bronze-encounter/", wheel)
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    expected = {f"bronze-encounter/{wheel.name}", "bronze-encounter/glue_entry.py", "bronze-encounter/glue.toml"}
    assert listed == expected and changed == dict.fromkeys(expected, True)
    # Each object carries its content digest, so the next deploy uploads (and restarts for) real changes only.
    stored = s3.head_object(Bucket=s3_bucket, Key=f"bronze-encounter/{wheel.name}")["Metadata"]
    assert stored == {"content-sha256": deploy.content_digest(wheel)}
    assert deploy.upload_artifacts(s3, s3_bucket, "bronze-encounter/", wheel) == dict.fromkeys(expected, False)
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


@_moto_cfn
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


@_moto_cfn
@pytest.mark.slow  # builds the wheel
def test_the_cli_dry_run_prints_the_changes_and_uploads_nothing(
    aws_env: str, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy = _deploy_module()
    stack = f"cli-{s3_bucket}"[:120]
    argv = ["--stack", stack, "--landing-bucket", "landing-b", "--lakehouse-bucket", "lake-b"]
    assert deploy.main([*argv, "--artifacts-bucket", s3_bucket, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "Add      LedgerTable AWS::DynamoDB::Table" in out
    assert f"upload   s3://{s3_bucket}/bronze-encounter/glue_entry.py" in out
    assert out[-2].startswith(f"job {stack}: would restart (") and "stack change(s)" in out[-2]
    assert out[-1].startswith(f"stack {stack}: dry run, ") and out[-1].endswith(", 3 upload(s); nothing deployed")
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket=s3_bucket)  # no artifact uploaded
    assert stack not in {s["StackName"] for s in aws.client("cloudformation").describe_stacks()["Stacks"]}


@_moto_cfn
@pytest.mark.slow  # builds the wheel
def test_the_cli_prints_the_changes_then_uploads_creates_the_stack_and_starts_the_first_run(
    aws_env: str, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy = _deploy_module()
    stack = f"cli-{s3_bucket}"[:120]
    job = _create_the_stacks_glue_job(stack, s3_bucket)
    argv = ["--stack", stack, "--landing-bucket", "landing-b", "--lakehouse-bucket", "lake-b"]
    assert deploy.main([*argv, "--artifacts-bucket", s3_bucket, "--ledger-table", f"{s3_bucket}-ledger"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "Add      LedgerTable AWS::DynamoDB::Table" in out
    assert f"upload   s3://{s3_bucket}/bronze-encounter/glue.toml" in out
    ((run_id, run),) = _runs(stack).items()  # a new stack: its first run
    assert out[-4] == f"stack {stack}: CREATE_COMPLETE"
    assert out[-3].startswith(f"job {stack}: restarting (") and out[-3].endswith("glue_entry.py, glue.toml)")
    assert out[-2:] == [
        f"job {stack}: no run to stop",
        f"job {stack}: started run {run_id}, resuming from s3://lake-b/_checkpoints/{stack}/bronze/bronze_encounter/",
    ]
    assert run["Arguments"] == job["DefaultArguments"]  # no override: the job's own arguments, its checkpoint
    keys = {o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert {"bronze-encounter/glue_entry.py", "bronze-encounter/glue.toml"} < keys
    assert aws.client("dynamodb").describe_table(TableName=f"{s3_bucket}-ledger")["Table"]["TableStatus"] == "ACTIVE"


# --- restart after a deploy --------------------------------------------------------------------------------------


def _create_the_stacks_glue_job(stack: str, artifacts_bucket: str) -> dict[str, Any]:
    """Create the Glue job as the template defines it (moto's CloudFormation skips AWS::Glue::Job); its properties."""
    job = render(stack=stack, JobName=stack, ArtifactsBucket=artifacts_bucket).props("StreamingJob")
    aws.client("glue").create_job(
        Name=job["Name"],
        Role=job["Role"],
        Command=job["Command"],
        DefaultArguments=job["DefaultArguments"],
        ExecutionProperty=job["ExecutionProperty"],
        MaxRetries=job["MaxRetries"],
        GlueVersion=job["GlueVersion"],
        WorkerType=job["WorkerType"],
        NumberOfWorkers=int(job["NumberOfWorkers"]),
        SecurityConfiguration=job["SecurityConfiguration"],
    )
    return job


def _runs(job: str) -> dict[str, dict[str, Any]]:
    """The job's runs by id (on moto a read can move a run on, see `glue_run_transition`)."""
    return {run["Id"]: run for run in aws.client("glue").get_job_runs(JobName=job)["JobRuns"]}


def _wheel(folder: Path, code: str, stamp: tuple[int, int, int, int, int, int] = (2026, 1, 1, 0, 0, 0)) -> Path:
    """A small stand-in wheel (the real build is tested above): `code` is its content, `stamp` its zip times."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bronze_encounter-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(zipfile.ZipInfo("streaming/__init__.py", date_time=stamp), code)
    return path


def _deploy(deploy: ModuleType, stack: str, bucket: str, wheel: Path, *extra: str) -> int:
    buckets = ["--landing-bucket", "landing-b", "--lakehouse-bucket", "lake-b", "--artifacts-bucket", bucket]
    ledger = ["--ledger-table", f"{bucket}-ledger"]
    return deploy.main(["--stack", stack, *buckets, *ledger, "--wheel", str(wheel), *extra])


@pytest.fixture
def glue_run_transition(aws_env: str) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Set how moto moves Glue job runs STARTING -> RUNNING -> SUCCEEDED (its state manager); reset afterwards."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the moto server is local

    def post(action: str, body: dict[str, Any]) -> None:
        url = f"{aws_env}/moto-api/state-manager/{action}"
        with opener.open(urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")) as response:
            assert response.status == 201

    yield lambda transition: post("set-transition", {"model_name": "glue::job_run", "transition": transition})
    post("unset-transition", {"model_name": "glue::job_run"})


def test_a_rebuilt_wheel_with_the_same_code_has_the_same_digest(tmp_path: Path) -> None:
    deploy = _deploy_module()
    first = _wheel(tmp_path / "1", "v = 1\n")
    rebuilt = _wheel(tmp_path / "2", "v = 1\n", stamp=(2026, 6, 1, 12, 30, 0))
    changed = _wheel(tmp_path / "3", "v = 2\n")
    assert first.read_bytes() != rebuilt.read_bytes()  # as two `pip wheel` runs of one checkout differ
    assert deploy.content_digest(first) == deploy.content_digest(rebuilt) != deploy.content_digest(changed)


@_moto_cfn
def test_new_code_restarts_the_job_on_its_checkpoint_and_an_unchanged_deploy_leaves_it_running(
    aws_env: str,
    s3_bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    glue_run_transition: Callable[[dict[str, Any]], None],
) -> None:
    glue_run_transition({"progression": "immediate"})  # a run ends as soon as it is read: none active at a deploy
    deploy = _deploy_module()
    stack = f"rs-{s3_bucket}"[:120]
    job = _create_the_stacks_glue_job(stack, s3_bucket)
    assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path / "a", "v = 1\n")) == 0
    (first,) = _runs(stack)
    capsys.readouterr()

    # The same code rebuilt (other zip times): nothing uploaded, the stack unchanged, no new run.
    assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path / "b", "v = 1\n", stamp=(2026, 2, 2, 2, 2, 2))) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("upload")] == []
    assert out[-1] == f"job {stack}: not restarted (nothing changed)"
    assert list(_runs(stack)) == [first]

    # New code: the wheel is uploaded and one run starts, with the job's own arguments, so on the same checkpoint.
    assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path / "c", "v = 2\n")) == 0
    out = capsys.readouterr().out.splitlines()
    prefix = f"s3://{s3_bucket}/bronze-encounter/"
    assert f"upload   {prefix}bronze_encounter-0.1.0-py3-none-any.whl" in out
    assert f"same     {prefix}glue_entry.py" in out and f"same     {prefix}glue.toml" in out
    runs = _runs(stack)
    (second,) = set(runs) - {first}
    assert out[-3:] == [
        f"job {stack}: restarting (new bronze_encounter-0.1.0-py3-none-any.whl)",
        f"job {stack}: no run to stop",
        f"job {stack}: started run {second}, resuming from s3://lake-b/_checkpoints/{stack}/bronze/bronze_encounter/",
    ]
    assert runs[first]["Arguments"] == runs[second]["Arguments"] == job["DefaultArguments"]
    assert runs[second]["Arguments"]["--checkpoint"] == f"s3://lake-b/_checkpoints/{stack}/bronze/bronze_encounter/"

    # --no-restart ships the new code and leaves the runs alone.
    assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path / "d", "v = 3\n"), "--no-restart") == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"job {stack}: not restarted (--no-restart)"
    assert set(_runs(stack)) == {first, second}


@_moto_cfn
def test_a_running_run_is_stopped_first_and_no_second_run_starts_when_the_stop_fails(
    aws_env: str,
    s3_bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    glue_run_transition: Callable[[dict[str, Any]], None],
) -> None:
    deploy = _deploy_module()
    stack = f"rr-{s3_bucket}"[:120]
    _create_the_stacks_glue_job(stack, s3_bucket)
    wheel = _wheel(tmp_path, "v = 1\n")
    glue_run_transition({"progression": "manual", "times": 1})  # every read moves a run one state on...
    assert _deploy(deploy, stack, s3_bucket, wheel) == 0
    (run_id,) = _runs(stack)  # ...so this read moves the first run STARTING -> RUNNING...
    glue_run_transition({"progression": "manual", "times": 10**9})  # ...where it now stays
    assert {rid: run["JobRunState"] for rid, run in _runs(stack).items()} == {run_id: "RUNNING"}
    capsys.readouterr()

    assert _deploy(deploy, stack, s3_bucket, wheel, "--restart") == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == f"job {stack}: restarting (--restart)"
    # The deploy asks Glue to stop the RUNNING run. moto 5.2.5 does not implement BatchStopJobRun (its server
    # answers 500), so the stop fails here, and the deploy must not start a second run next to the running one.
    # Once moto serves BatchStopJobRun, follow this restart through to the new run instead.
    assert f"job {stack}: BatchStopJobRun of ['{run_id}'] failed: An error occurred (500)" in captured.err
    assert {rid: run["JobRunState"] for rid, run in _runs(stack).items()} == {run_id: "RUNNING"}


def test_waiting_for_stopped_runs_polls_glue_until_they_end_or_times_out(
    aws_env: str, unique_name: str, glue_run_transition: Callable[[dict[str, Any]], None]
) -> None:
    deploy = _deploy_module()
    _create_the_stacks_glue_job(unique_name, "artifacts-b")
    glue = aws.client("glue")
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
    stack = f"nj-{s3_bucket}"[:120]  # no Glue job of that name: moto's CloudFormation does not create it
    assert _deploy(deploy, stack, s3_bucket, _wheel(tmp_path, "v = 1\n")) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-2] == f"stack {stack}: CREATE_COMPLETE"
    err = captured.err.splitlines()
    assert err[0].startswith(f"job {stack}: An error occurred (EntityNotFoundException)")
    assert err[-1] == f"job {stack}: the stack is deployed, the job not restarted (rerun with --restart)"
