"""Deploy path: build the wheel, upload what changed, create or update the stack, restart the job on its checkpoint.

    python deploy/deploy.py --stack bronze-encounter --landing-bucket L --lakehouse-bucket H --artifacts-bucket A
    python deploy/deploy.py ... --dry-run   # print the change set, the uploads and the restart decision only

Every run prints the change set first; --job-command glueetl, --kms-key-arn and --alarm-email set the template's
JobCommand, KmsKeyArn and AlarmEmail parameters. After the stack is deployed the job is restarted when the stack or
an artifact (wheel, entry script, glue.toml) changed: its active runs are stopped, and a new run starts with the
job's DefaultArguments, so it resumes from the same --checkpoint. --restart forces that, --no-restart skips it.

Uses the caller's AWS credentials (boto3's usual chain); AWS_ENDPOINT_URL points it at a stand-in (moto) in tests.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError, WaiterError

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "template.json"
DIGEST_KEY = "content-sha256"  # S3 user metadata holding an artifact's content digest
ACTIVE = ("STARTING", "RUNNING", "WAITING")  # run states a stop request applies to
UNFINISHED = (*ACTIVE, "STOPPING")  # run states a restart must wait out (MaxConcurrentRuns is 1)
STOP_BATCH = 25  # BatchStopJobRun takes at most 25 run ids


class JobStopFailed(RuntimeError):
    """Glue refused to stop a run, so no new run was started."""


class JobStopTimedOut(RuntimeError):
    """A stopped run did not finish within the stop timeout, so no new run was started."""


@dataclass(frozen=True)
class Restart:
    """What restart_job did: the runs it stopped, the run it started and the checkpoint that run resumes from."""

    stopped: tuple[str, ...]
    started: str
    checkpoint: str


def build_wheel(out_dir: Path) -> Path:
    """Build this project's wheel (no dependencies: Glue 5.1 provides Spark, boto3, pyarrow and pandas)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out_dir), str(ROOT)],
        check=True,
    )
    (wheel,) = out_dir.glob("bronze_encounter-*.whl")
    return wheel


def content_digest(path: Path) -> str:
    """SHA-256 of what a file holds; for a wheel, of its members' names and bytes (a rebuild changes zip timestamps)."""
    digest = hashlib.sha256()
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            for name in sorted(wheel.namelist()):
                digest.update(name.encode() + b"\0" + wheel.read(name) + b"\0")
    else:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def upload_artifacts(s3: Any, bucket: str, prefix: str, wheel: Path, *, dry_run: bool = False) -> dict[str, bool]:
    """Upload what the Glue job runs, skipping objects that already hold the same content; returns {key: changed}."""
    artifacts = {
        wheel.name: wheel,
        "glue_entry.py": ROOT / "streaming" / "glue_entry.py",
        "glue.toml": ROOT / "checkpoints_conf" / "glue.toml",
    }
    changed = {}
    for name, path in artifacts.items():
        key, digest = f"{prefix}{name}", content_digest(path)
        changed[key] = _stored_digest(s3, bucket, key) != digest
        if changed[key] and not dry_run:
            s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {DIGEST_KEY: digest}})
    return changed


def _stored_digest(s3: Any, bucket: str, key: str) -> str | None:
    try:
        return s3.head_object(Bucket=bucket, Key=key)["Metadata"].get(DIGEST_KEY)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def deploy_stack(cfn: Any, stack: str, parameters: dict[str, str]) -> str:
    """Create the stack, or update it when it exists; wait until done and return its final status."""
    params = [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]
    body = TEMPLATE.read_text()
    try:
        cfn.describe_stacks(StackName=stack)
        exists = True
    except ClientError:
        exists = False
    if exists:
        try:
            cfn.update_stack(StackName=stack, TemplateBody=body, Parameters=params, Capabilities=["CAPABILITY_IAM"])
        except ClientError as exc:
            if "No updates are to be performed" not in str(exc):
                raise
        else:
            cfn.get_waiter("stack_update_complete").wait(StackName=stack)
    else:
        cfn.create_stack(StackName=stack, TemplateBody=body, Parameters=params, Capabilities=["CAPABILITY_IAM"])
        cfn.get_waiter("stack_create_complete").wait(StackName=stack)
    return cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]


def plan_changes(cfn: Any, stack: str, parameters: dict[str, str]) -> list[dict[str, str]]:
    """What deploying would change (a change set, described and then deleted): one dict per resource."""
    params = [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]
    try:
        cfn.describe_stacks(StackName=stack)
        kind = "UPDATE"
    except ClientError:
        kind = "CREATE"
    name = f"{stack}-dry-run-{int(time.time())}"
    cfn.create_change_set(
        StackName=stack,
        ChangeSetName=name,
        ChangeSetType=kind,
        TemplateBody=TEMPLATE.read_text(),
        Parameters=params,
        Capabilities=["CAPABILITY_IAM"],
    )
    try:
        try:
            cfn.get_waiter("change_set_create_complete").wait(StackName=stack, ChangeSetName=name)
        except WaiterError:
            described = cfn.describe_change_set(StackName=stack, ChangeSetName=name)
            if "didn't contain changes" in described.get("StatusReason", ""):
                return []  # the stack already matches
            raise
        changes = cfn.describe_change_set(StackName=stack, ChangeSetName=name)["Changes"]
    finally:
        cfn.delete_change_set(StackName=stack, ChangeSetName=name)
        if kind == "CREATE":  # a CREATE change set leaves an empty stack in REVIEW_IN_PROGRESS behind
            cfn.delete_stack(StackName=stack)
            cfn.get_waiter("stack_delete_complete").wait(StackName=stack)  # so create_stack may reuse the name
    return [
        {
            "action": c["ResourceChange"]["Action"],
            "resource": c["ResourceChange"]["LogicalResourceId"],
            "type": c["ResourceChange"]["ResourceType"],
            "replacement": c["ResourceChange"].get("Replacement", ""),
        }
        for c in changes
        if c.get("Type") == "Resource"
    ]


def job_runs(glue: Any, job_name: str) -> dict[str, str]:
    """Every run Glue keeps for the job: {run id: state}."""
    pages = glue.get_paginator("get_job_runs").paginate(JobName=job_name)
    return {run["Id"]: run["JobRunState"] for page in pages for run in page["JobRuns"]}


def wait_until_finished(
    glue: Any, job_name: str, run_ids: list[str], timeout_seconds: float, poll_seconds: float
) -> dict[str, str]:
    """Poll the runs until none is starting, running, waiting or stopping; returns {run id: final state}."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        states = {rid: glue.get_job_run(JobName=job_name, RunId=rid)["JobRun"]["JobRunState"] for rid in run_ids}
        unfinished = {rid: state for rid, state in states.items() if state in UNFINISHED}
        if not unfinished:
            return states
        if time.monotonic() >= deadline:
            raise JobStopTimedOut(
                f"job {job_name}: run(s) {unfinished} not finished after {timeout_seconds:g} s; no new run started"
            )
        time.sleep(poll_seconds)


def restart_job(glue: Any, job_name: str, *, timeout_seconds: float = 900.0, poll_seconds: float = 10.0) -> Restart:
    """Stop the job's active runs, wait until they finish, then start one run with the job's DefaultArguments."""
    runs = job_runs(glue, job_name)
    to_stop = [rid for rid, state in runs.items() if state in ACTIVE]
    for i in range(0, len(to_stop), STOP_BATCH):
        batch = to_stop[i : i + STOP_BATCH]
        try:
            errors = glue.batch_stop_job_run(JobName=job_name, JobRunIds=batch).get("Errors", [])
        except ClientError as exc:
            raise JobStopFailed(f"job {job_name}: BatchStopJobRun of {batch} failed: {exc}") from exc
        if errors:
            details = {e["JobRunId"]: e.get("ErrorDetail", {}).get("ErrorCode", "") for e in errors}
            raise JobStopFailed(f"job {job_name}: Glue did not stop run(s) {details}; no new run started")
    unfinished = [rid for rid, state in runs.items() if state in UNFINISHED]
    if unfinished:
        wait_until_finished(glue, job_name, unfinished, timeout_seconds, poll_seconds)
    checkpoint = glue.get_job(JobName=job_name)["Job"].get("DefaultArguments", {}).get("--checkpoint", "")
    # No Arguments: the run takes the job's DefaultArguments, the same --checkpoint and warehouse as the last run.
    started = glue.start_job_run(JobName=job_name)["JobRunId"]
    return Restart(tuple(to_stop), started, checkpoint)


def restart_reasons(changes: list[dict[str, str]], artifacts: dict[str, bool], forced: bool) -> list[str]:
    """Why the job needs a new run (empty: it runs the deployed definition already)."""
    reasons = ["--restart"] if forced else []
    if changes:
        reasons.append(f"{len(changes)} stack change(s)")
    changed = [key.rsplit("/", 1)[-1] for key, was_changed in artifacts.items() if was_changed]
    if changed:
        reasons.append("new " + ", ".join(changed))
    return reasons


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="bronze-encounter", help="stack name, also the Glue job's name")
    parser.add_argument("--landing-bucket", required=True)
    parser.add_argument("--landing-prefix", default="fhir/encounter/", help="prefix the files land under, ending in /")
    parser.add_argument(
        "--archive-prefix",
        default="fhir/archive/",
        help="move ingested files under this prefix of the landing bucket (ending in /, outside --landing-prefix) so "
        "listing stays flat as files accumulate (default: %(default)s); off: files stay where they land",
    )
    parser.add_argument("--lakehouse-bucket", required=True)
    parser.add_argument("--artifacts-bucket", required=True)
    parser.add_argument("--artifacts-prefix", default="bronze-encounter/")
    parser.add_argument("--region")
    parser.add_argument("--job-command", choices=["gluestreaming", "glueetl"], default="gluestreaming")
    parser.add_argument("--kms-key-arn", default="", help="an existing KMS key; default: the stack creates one")
    parser.add_argument("--alarm-email", default="", help="address subscribed to the alarm topic")
    parser.add_argument("--ledger-table", default="bronze_encounter_ledger")
    parser.add_argument("--wheel", type=Path, help="a wheel built already (default: build one from this checkout)")
    parser.add_argument("--dry-run", action="store_true", help="print the change set, change nothing")
    restart = parser.add_mutually_exclusive_group()
    restart.add_argument("--restart", action="store_true", help="restart the job even when nothing changed")
    restart.add_argument("--no-restart", action="store_true", help="leave the job's runs alone")
    parser.add_argument(
        "--stop-timeout", type=float, default=900.0, help="seconds to wait for stopped runs to end (default 900)"
    )
    args = parser.parse_args(argv)

    session = boto3.session.Session(region_name=args.region)
    cfn, s3 = session.client("cloudformation"), session.client("s3")
    job = args.stack
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or build_wheel(Path(tmp))
        parameters = {
            "JobName": job,
            "JobCommand": args.job_command,
            "LandingBucket": args.landing_bucket,
            "LandingPrefix": args.landing_prefix,
            "ArchivePrefix": args.archive_prefix,
            "LakehouseBucket": args.lakehouse_bucket,
            "ArtifactsBucket": args.artifacts_bucket,
            "ArtifactsPrefix": args.artifacts_prefix,
            "WheelName": wheel.name,
            "KmsKeyArn": args.kms_key_arn,
            "AlarmEmail": args.alarm_email,
            "LedgerTableName": args.ledger_table,
        }
        changes = plan_changes(cfn, args.stack, parameters)
        for change in changes:
            replacement = f" (replacement: {change['replacement']})" if change["replacement"] else ""
            print(f"{change['action']:<8} {change['resource']} {change['type']}{replacement}")
        artifacts = upload_artifacts(s3, args.artifacts_bucket, args.artifacts_prefix, wheel, dry_run=args.dry_run)
        for key, changed in artifacts.items():
            print(f"{'upload' if changed else 'same':<8} s3://{args.artifacts_bucket}/{key}")
    reasons = [] if args.no_restart else restart_reasons(changes, artifacts, args.restart)
    why = "--no-restart" if args.no_restart else ", ".join(reasons) or "nothing changed"
    if args.dry_run:
        print(f"job {job}: {'would restart' if reasons else 'would not restart'} ({why})")
        uploads = sum(artifacts.values())
        print(f"stack {args.stack}: dry run, {len(changes)} change(s), {uploads} upload(s); nothing deployed")
        return 0
    print(f"stack {args.stack}: {deploy_stack(cfn, args.stack, parameters)}")
    if not reasons:
        print(f"job {job}: not restarted ({why})")
        return 0
    print(f"job {job}: restarting ({why})")
    try:
        done = restart_job(session.client("glue"), job, timeout_seconds=args.stop_timeout)
    except (JobStopFailed, JobStopTimedOut, ClientError) as exc:
        # A ClientError: no such job, no permission, or a run started meanwhile (ConcurrentRunsExceededException).
        failure = str(exc) if isinstance(exc, RuntimeError) else f"job {job}: {exc}"
        advice = f"job {job}: the stack is deployed, the job not restarted (rerun with --restart)"
        print(failure, advice, sep="\n", file=sys.stderr)
        return 1
    print(f"job {job}: stopped run(s) {', '.join(done.stopped)}" if done.stopped else f"job {job}: no run to stop")
    resumes = done.checkpoint or "the checkpoint in glue.toml"
    print(f"job {job}: started run {done.started}, resuming from {resumes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
