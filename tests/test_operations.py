"""docs/operations.md, run as written: each `sh` block against the moto server, then a check of what it did.

The blocks run in `bash -euo pipefail` from the repository's root, as separate processes (the commands an operator
types), against the moto server this process hosts. `sh parse-only` blocks are checked, not run: each command
against its parser, each Python snippet compiled.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from helpers import job_config

from streaming import cli
from streaming.adapters import aws

ROOT = Path(__file__).resolve().parents[1]
RUNBOOK = ROOT / "docs" / "operations.md"

pytestmark = [
    pytest.mark.filterwarnings(f"ignore:Tried to parse AWS..{kind}:UserWarning")
    for kind in ("Glue", "Athena", "SNS..TopicPolicy", "CloudWatch..Alarm")
]


@dataclass(frozen=True)
class Block:
    section: str
    kind: str  # "sh", "sh parse-only" or "sh variables"
    text: str


def blocks() -> list[Block]:
    """Every fenced shell block of the runbook with the `## ` section it is in."""
    found, section = [], ""
    for match in re.finditer(r"^## ([^\n]+)$|^```(sh[^\n]*)\n(.*?)^```$", RUNBOOK.read_text(), re.M | re.S):
        if match.group(1):
            section = match.group(1).strip()
        else:
            found.append(Block(section, match.group(2).strip(), match.group(3)))
    return found


def _script(path: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _commands(text: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and heredoc bodies left out."""
    commands, heredoc = [], None
    for line in text.replace("\\\n", " ").splitlines():
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        if found := re.search(r"<<'(\w+)'", line):
            heredoc = found.group(1)
        if line.strip() and not line.lstrip().startswith("#"):
            commands.append(line.strip())
    return commands


def _snippets(text: str) -> list[str]:
    """The Python heredocs of a block (`<<'EOF' ... EOF`)."""
    return [body for _, body in re.findall(r"<<'(\w+)'\n(.*?)^\1$", text, re.M | re.S)]


VARIABLES = {
    "STACK": "ops-stack",
    "LANDING": "ops-landing",
    "LAKEHOUSE": "ops-lakehouse",
    "ARTIFACTS": "ops-artifacts",
    "EXPORTS": "ops-exports",
    "BEFORE": "2026-12-06T09:00:00Z",
}


def test_the_runbook_names_the_variables_the_test_gives_and_its_sections_hold_the_blocks_the_test_runs() -> None:
    (variables,) = [b for b in blocks() if b.kind == "sh variables"]
    assert [line.split("=", 1)[0] for line in _commands(variables.text)] == list(VARIABLES)
    counts: dict[str, list[str]] = {}
    for block in blocks():
        counts.setdefault(block.section, []).append(block.kind)
    assert counts == {  # a block added to the runbook is added to the walk below too
        "": ["sh variables"],
        "Deploy, review, roll back": ["sh", "sh"],
        "Stop, reingest or replay, restart": ["sh", "sh parse-only", "sh"],
        "Backfill a month of files": ["sh"],
        "A lost or broken checkpoint": ["sh", "sh"],
        "Restore the ledger from point-in-time recovery": ["sh", "sh"],
        "Hudi savepoints and restoring one": ["sh parse-only", "sh parse-only"],
        "Rotate the key": ["sh"],
        "Expire archived files": ["sh"],
        "Delete the stack": ["sh"],
    }


def test_the_blocks_not_run_parse_as_written() -> None:
    """Commands needing Spark and Hudi tables: each against the parser it meets, each snippet compiled."""
    ops = _script("deploy/ops.py", "ops_script")
    checked = 0
    for block in (b for b in blocks() if b.kind == "sh parse-only"):
        for snippet in _snippets(block.text):
            compile(snippet, f"{block.section} snippet", "exec")
            checked += 1
        for command in _commands(block.text):
            argv = [
                VARIABLES.get(a[2:-1], a) if a.startswith('"$') else a for a in shlex.split(command.split(" <<")[0])
            ]
            argv = [re.sub(r"\$(\w+)", lambda m: VARIABLES[m.group(1)], a) for a in argv]
            if argv[0] == ".venv/bin/bronze-encounter":
                cli.parser().parse_args(argv[1:])
            elif argv[:2] == [".venv/bin/python", "deploy/ops.py"]:
                ops.parser().parse_args(argv[2:])
            elif argv[:2] == ["make", "deploy"] or argv[:2] == [".venv/bin/python", "-"]:
                pass  # make deploy runs in the walk below; the snippet is compiled above
            else:
                raise AssertionError(f"{block.section}: a command the test does not know how to check: {command}")
            checked += 1
    assert checked == 12


# --- the walk -----------------------------------------------------------------------------------------------------


def _run(block: Block, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{block.section}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _wheel(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bronze_encounter-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("streaming/__init__.py", "earlier = True\n")
    return path


def _tables_written(spark: Any, tmp_path: Path, s3: Any, bucket: str, prefix: str) -> None:
    """The tables a running job would have written by now (status refuses a warehouse without them): one local run
    of one Encounter, its table folders uploaded under the stack's warehouse."""
    from streaming.pipeline import job

    landing = tmp_path / "written" / "landing"
    landing.mkdir(parents=True)
    (landing / "one.ndjson").write_text(json.dumps({"resourceType": "Encounter", "id": "e1", "status": "finished"}))
    config = job_config(tmp_path / "written", landing)
    assert job.run(config, once=True, spark=spark).rows_written == 1
    for table in (config.tables.encounter, config.tables.ingest_log):
        root = Path(config.table_uri(table))
        for path in (p for p in root.rglob("*") if p.is_file()):
            s3.upload_file(str(path), bucket, f"{prefix}{table}/{path.relative_to(root).as_posix()}")


@pytest.mark.spark  # builds the wheel (make deploy) and runs every block as its own processes, against moto
def test_the_runbook_runs_as_written(
    spark: Any,
    aws_env: str,
    tmp_path: Path,
    cloudformation_like_aws: None,
    glue_stops_job_runs: None,
    glue_run_transition: Callable[[dict[str, Any]], None],
) -> None:
    glue_run_transition({"progression": "manual", "times": 10**9})  # runs stay STARTING until stopped
    v = VARIABLES
    s3, cfn, glue = aws.client("s3"), aws.client("cloudformation"), aws.client("glue")
    dynamodb, cloudwatch, kms = aws.client("dynamodb"), aws.client("cloudwatch"), aws.client("kms")
    for bucket in (v["LANDING"], v["LAKEHOUSE"], v["ARTIFACTS"], v["EXPORTS"]):
        s3.create_bucket(Bucket=bucket)
    stack = v["STACK"]
    rb = _Runbook(stack, {**os.environ, **v}, iter(b for b in blocks() if b.kind == "sh"), s3, cfn, glue)

    # The stack ran an earlier version before (so there is one to roll back to).
    earlier = _deploy_earlier(rb, v, tmp_path)

    # Deploy, review, roll back.
    out = rb.run_next()
    built = rb.params()["ArtifactsVersion"]
    assert built != earlier and f"stack {stack}: UPDATE_COMPLETE, version {built}" in out
    assert [line.split()[0] for line in out.splitlines() if re.match(r"[0-9a-f]{12}  built", line)] == [earlier, built]
    assert len(rb.active_runs()) == 1  # the deploy restarted the job
    out = rb.run_next()
    assert rb.params()["NumberOfWorkers"] == "2" and glue.get_job(JobName=stack)["Job"]["NumberOfWorkers"] == 2
    assert "NumberOfWorkers  2 -> 4" in out and "NumberOfWorkers  4 -> 2" in out  # each change printed first
    assert (rb.params()["ArtifactsVersion"], rb.params()["PreviousVersion"]) == (earlier, built)  # rolled back
    assert glue.get_job(JobName=stack)["Job"]["Command"]["ScriptLocation"].endswith(f"/{earlier}/glue_entry.py")

    # Stop, reingest or replay, restart: by now the job has written its tables (copied in from a local run).
    _tables_written(spark, tmp_path, s3, v["LAKEHOUSE"], "bronze/")
    s3.put_object(Bucket=v["LANDING"], Key="fhir/encounter/2026/12/01/export-0001.ndjson", Body=b"{}\n")
    out = rb.run_next()
    assert rb.active_runs() == []
    alarms = cloudwatch.describe_alarms(AlarmNamePrefix=f"{stack}-")["MetricAlarms"]
    assert len(alarms) == 7 and not any(a["ActionsEnabled"] for a in alarms)
    assert "export-0001.ndjson" in out or "1" in out  # status read the deployed settings and listed the landing
    rb.run_next()
    assert len(rb.active_runs()) == 1
    assert all(a["ActionsEnabled"] for a in cloudwatch.describe_alarms(AlarmNamePrefix=f"{stack}-")["MetricAlarms"])

    # Backfill a month of files.
    for day in ("01", "02", "03"):
        s3.put_object(Bucket=v["EXPORTS"], Key=f"2026-05/{day}/encounters.ndjson", Body=b"{}\n")
    rb.run_next()
    assert rb.keys(v["LANDING"], "fhir/encounter/backfill/") == [
        f"fhir/encounter/backfill/2026-05/{day}/encounters.ndjson" for day in ("01", "02", "03")
    ]

    # A lost or broken checkpoint: moved aside, and a run starts on a fresh one.
    checkpoint = _checkpoint_blocks(rb, v["LAKEHOUSE"])

    # Restore the ledger: a copy as it was, inspected, then the live table made equal to it.
    ledger = _ledger_blocks(rb, dynamodb)

    # Rotate the key.
    key = rb.outputs()["KeyArn"]
    assert kms.list_key_rotations(KeyId=key).get("Rotations", []) == []
    rb.run_next()
    assert len(kms.list_key_rotations(KeyId=key)["Rotations"]) == 1

    # Expire archived files: the stack's rule added, the bucket's other rules kept.
    _lifecycle_block(rb, v["LANDING"])

    # Delete the stack: the preview deletes nothing; then the job stops and the stack goes, the data stays.
    key_id = key.rsplit("/", 1)[-1]
    out = rb.run_next()
    assert "Nothing is deleted now: rerun with --yes." in out and f"stack {stack}: deleted. Kept:" in out
    live_stacks = {s["StackName"] for s in cfn.describe_stacks()["Stacks"]}
    assert stack not in live_stacks and rb.active_runs() == []
    assert dynamodb.describe_table(TableName=ledger)["Table"]["TableStatus"] == "ACTIVE"  # DeletionPolicy Retain
    assert key_id in {k["KeyId"] for k in kms.list_keys()["Keys"]}  # the key stayed (its alias went)
    assert f"the KMS key {key} (Retain)" in out
    assert rb.keys(v["LAKEHOUSE"], checkpoint) and rb.keys(v["ARTIFACTS"], f"bronze-encounter/{built}/")
    assert next(rb.blocks, None) is None  # every block ran


@dataclass
class _Runbook:
    """The runbook's shell blocks, run one after another with `env`, and what the checks read of the stack."""

    stack: str
    env: dict[str, str]
    blocks: Iterator[Block]
    s3: Any
    cfn: Any
    glue: Any

    def run_next(self) -> str:
        return _run(next(self.blocks), self.env)

    def params(self) -> dict[str, str]:
        described = self.cfn.describe_stacks(StackName=self.stack)["Stacks"][0]
        return {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}

    def outputs(self) -> dict[str, str]:
        described = self.cfn.describe_stacks(StackName=self.stack)["Stacks"][0]
        return {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}

    def active_runs(self) -> list[str]:
        runs = self.glue.get_job_runs(JobName=self.stack)["JobRuns"]
        return [r["Id"] for r in runs if r["JobRunState"] in ("STARTING", "RUNNING", "WAITING", "STOPPING")]

    def keys(self, bucket: str, prefix: str) -> list[str]:
        return [o["Key"] for o in self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def _deploy_earlier(rb: _Runbook, v: dict[str, str], tmp_path: Path) -> str:
    """Deploy a version before the runbook's (without a restart); its name."""
    deploy = _script("deploy/deploy.py", "deploy_script")
    buckets = [
        "--landing-bucket",
        v["LANDING"],
        "--lakehouse-bucket",
        v["LAKEHOUSE"],
        "--artifacts-bucket",
        v["ARTIFACTS"],
    ]
    assert deploy.main(["--stack", rb.stack, *buckets, "--wheel", str(_wheel(tmp_path)), "--yes", "--no-restart"]) == 0
    return rb.params()["ArtifactsVersion"]


def _checkpoint_blocks(rb: _Runbook, lakehouse: str) -> str:
    """The checkpoint moved aside (a run starts on a fresh one), then an older one copied in; its S3 prefix."""
    checkpoint = rb.outputs()["Checkpoint"].removeprefix(f"s3://{lakehouse}/")
    assert checkpoint == f"_checkpoints/{rb.stack}/bronze/bronze_encounter/"
    for name in ("metadata", "offsets/0", "commits/0"):
        rb.s3.put_object(Bucket=lakehouse, Key=checkpoint + name, Body=b"x")
    before = set(rb.glue.get_job_runs(JobName=rb.stack)["JobRuns"][i]["Id"] for i in range(len(rb.active_runs())))
    rb.run_next()
    assert rb.keys(lakehouse, checkpoint) == []
    aside = [k for k in rb.keys(lakehouse, f"_checkpoints/{rb.stack}/") if ".aside-" in k]
    assert sorted(k.rsplit("/", 2)[-2:][-1] for k in aside) == ["0", "0", "metadata"] and len(rb.active_runs()) == 1
    assert set(rb.active_runs()).isdisjoint(before)
    # ...and an older deployment's checkpoint copied to the stack's path.
    old = "_checkpoints/bronze_encounter/"
    for name in ("metadata", "offsets/7", "commits/7"):
        rb.s3.put_object(Bucket=lakehouse, Key=old + name, Body=name.encode())
    rb.run_next()
    assert sorted(rb.keys(lakehouse, checkpoint)) == [checkpoint + n for n in ("commits/7", "metadata", "offsets/7")]
    assert len(rb.active_runs()) == 1
    return checkpoint


def _ledger_blocks(rb: _Runbook, dynamodb: Any) -> str:
    """A copy of the ledger as it was, then the live table made equal to it; the live table's name."""
    ledger = rb.params()["LedgerTableName"]
    for pk in ("file#a", "file#b"):
        dynamodb.put_item(TableName=ledger, Item={"pk": {"S": pk}, "state": {"S": "committed"}})
    rb.run_next()
    copy = f"{rb.stack}-ledger-before"
    assert dynamodb.describe_table(TableName=copy)["Table"]["TableStatus"] == "ACTIVE"
    # The incident, after the time restored to (moto restores the table as it is: the damage comes after).
    dynamodb.delete_item(TableName=ledger, Key={"pk": {"S": "file#a"}})
    dynamodb.put_item(TableName=ledger, Item={"pk": {"S": "junk"}, "state": {"S": "x"}})
    rb.run_next()
    live = {i["pk"]["S"] for i in dynamodb.scan(TableName=ledger)["Items"]}
    assert {"file#a", "file#b"} <= live and "junk" not in live
    assert copy not in dynamodb.list_tables()["TableNames"] and len(rb.active_runs()) == 1
    return ledger


def _lifecycle_block(rb: _Runbook, landing: str) -> None:
    """The stack's expiry rule added to the landing bucket, the bucket's other rules kept."""
    other = {"ID": "other-team", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled", "Expiration": {"Days": 1}}
    rb.s3.put_bucket_lifecycle_configuration(Bucket=landing, LifecycleConfiguration={"Rules": [other]})
    rb.run_next()
    rules = {r["ID"]: r for r in rb.s3.get_bucket_lifecycle_configuration(Bucket=landing)["Rules"]}
    assert set(rules) == {"other-team", f"bronze-encounter-archive-{rb.stack}"}
    ours = rules[f"bronze-encounter-archive-{rb.stack}"]
    assert (ours["Filter"], ours["Expiration"]) == ({"Prefix": "fhir/archive/"}, {"Days": 2555})
    assert ours["Transitions"] == [{"Days": 90, "StorageClass": "GLACIER_IR"}]


def test_tasks_that_could_lose_data_refuse_with_exit_2_and_say_why(
    aws_env: str, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ops = _script("deploy/ops.py", "ops_script")
    parameters = {"JobName": "j", "LedgerTableName": "ledger", "LandingBucket": s3_bucket, "LakehouseBucket": s3_bucket}
    parameters |= {"LandingPrefix": "fhir/encounter/", "ArchivePrefix": "fhir/archive/", "KmsKeyArn": ""}
    checkpoint = f"s3://{s3_bucket}/_checkpoints/j/bronze/bronze_encounter/"
    stack = ops.Stack("j", parameters, {"Checkpoint": checkpoint})
    session = boto3.session.Session(region_name=os.environ["AWS_REGION"])
    s3 = aws.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="_checkpoints/j/bronze/bronze_encounter/metadata", Body=b"{}")
    refusals = [
        # Files under the landing or archive prefix were landed already: reingest takes those, land would copy them.
        (
            lambda: ops.land(session, stack, f"s3://{s3_bucket}/fhir/encounter/2026/", ""),
            "inside the landing or archive",
        ),
        (lambda: ops.land(session, stack, f"s3://{s3_bucket}/fhir/archive/fhir/", ""), "inside the landing or archive"),
        (lambda: ops.land(session, stack, f"s3://{s3_bucket}/exports/", "no-slash"), "--into must end with /"),
        # A live checkpoint is never overwritten by a copy.
        (lambda: ops.copy_checkpoint(session, stack, f"s3://{s3_bucket}/old/"), "holds a checkpoint already"),
        (lambda: ops.archive_lifecycle(session, stack, 30, 30), "--glacier-days must be fewer"),
        (lambda: ops.ledger_copy_back(session, stack, "ledger", delete_source=True), "names the live ledger itself"),
    ]
    for call, why in refusals:
        with pytest.raises(ops.OpsError) as refused:
            call()
        assert refused.value.code == 2 and why in str(refused.value), why
    off = ops.Stack("j", {**parameters, "ArchivePrefix": "off"}, {})
    with pytest.raises(ops.OpsError, match="does not archive"):
        ops.archive_lifecycle(session, off, 365, None)
    given = ops.Stack("j", {**parameters, "KmsKeyArn": "arn:aws:kms:us-east-1:1:key/k"}, {"KeyArn": "k"})
    with pytest.raises(ops.OpsError, match="its owner rotates it"):
        ops.rotate_key(session, given)
    # Nothing was written: the checkpoint is as it was, no file was landed.
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]] == [
        "_checkpoints/j/bronze/bronze_encounter/metadata"
    ]
    # Through the command line: one line, exit 2, no traceback.
    assert ops.main(["stop", "--stack", "no-such-stack"]) == 2
    assert capsys.readouterr().err.strip() == "stack no-such-stack does not exist (in this region: --region)"
