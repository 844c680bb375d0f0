"""Deploy path: build and upload a version, review its change set, apply it, restart the job on its checkpoint.

    python deploy/deploy.py --stack S --landing-bucket L --lakehouse-bucket H --artifacts-bucket A   # a new stack
    python deploy/deploy.py --stack S                       # an update: every parameter not passed keeps its value
    python deploy/deploy.py --stack S --param WorkerType=G.2X --yes
    python deploy/deploy.py --stack S --dry-run             # print the change set, change nothing
    python deploy/deploy.py --stack S --rollback            # return to the version deployed before this one
    python deploy/deploy.py --stack S --version 3f2a9c1d0b7e
    python deploy/deploy.py --stack S --version running --param NumberOfWorkers=4   # parameters only, no build
    python deploy/deploy.py --stack S --list-versions

A version is the wheel, streaming/cli/glue_entry.py, checkpoints_conf/glue.toml and deploy/template.json, uploaded
under <ArtifactsPrefix><version>/ where the version names their content (the same code rebuilt is the same
version). The job points at one version; a new one is used only once the stack update that names it succeeded.
The stack records it (parameter and output Version, tag bronze-encounter:version) and the one before it
(PreviousVersion, what --rollback returns to).

Every run prints the change set CloudFormation computed (parameter changes, resources with their property changes)
and executes that same change set after a confirmation (--yes: without asking). After it, the job is restarted
when the stack changed: its active runs are stopped, and a new run starts with the job's DefaultArguments, so it
resumes from the same --checkpoint. --restart forces that, --no-restart skips it.

Exit codes: 0 deployed, nothing to deploy, or a dry run; 1 the update failed (the stack's failure events are
printed) or the job was not restarted; 2 bad arguments or a template/parameter CloudFormation refused; 3 AWS
refused the caller (credentials, region, permissions); 4 the stack is in a state a person must resolve first
(ROLLBACK_COMPLETE, an operation in progress, UPDATE_ROLLBACK_FAILED); 5 the change set was not confirmed.

Credentials and region come from boto3's usual chain, as in the AWS CLI: --profile / AWS_PROFILE, --region /
AWS_REGION; AWS_ENDPOINT_URL points it at a stand-in (moto) in tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
    WaiterError,
)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "template.json"
DIGEST_KEY = "content-sha256"  # S3 user metadata holding an artifact's content digest
VERSION_TAG, COMMIT_TAG = "bronze-encounter:version", "bronze-encounter:commit"
ACTIVE = ("STARTING", "RUNNING", "WAITING")  # run states a stop request applies to
UNFINISHED = (*ACTIVE, "STOPPING")  # run states a restart must wait out (MaxConcurrentRuns is 1)
STOP_BATCH = 25  # BatchStopJobRun takes at most 25 run ids
TEMPLATE_BODY_LIMIT = 51_200  # CloudFormation's TemplateBody limit in bytes (larger needs TemplateURL)

EXIT_FAILED, EXIT_USAGE, EXIT_ACCESS, EXIT_STACK_STATE, EXIT_NOT_CONFIRMED = 1, 2, 3, 4, 5
# Error codes AWS answers when the caller, not the request, is the problem.
ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthorizationError",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
    }
)
# Stack states a deploy cannot act on, and what the operator does about each.
STUCK = {
    "ROLLBACK_COMPLETE": "its creation failed and was rolled back, so it cannot be updated: delete it "
    "(python deploy/ops.py delete-stack --stack {stack}; the ledger, database and key are retained) and deploy again",
    "ROLLBACK_FAILED": "its creation failed and so did the rollback: delete it in the CloudFormation console, "
    "retaining the resources it names, then deploy again",
    "UPDATE_ROLLBACK_FAILED": "an update failed and so did its rollback: fix the resource the events name, then "
    "continue the rollback (aws cloudformation continue-update-rollback --stack-name {stack}) and deploy again",
    "DELETE_FAILED": "a deletion failed: finish deleting it in the CloudFormation console first",
}


class DeployError(Exception):
    """A deploy stopped: the message is what to print, `code` the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


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


@dataclass(frozen=True)
class Version:
    """One deployable version: its files (name -> local path) and what names it."""

    name: str
    files: Mapping[str, Path]
    digests: Mapping[str, str]
    wheel: str
    commit: str
    template: str  # the template body to deploy (as uploaded)


@dataclass
class Plan:
    """A change set created and described: what deploying it would do."""

    name: str
    kind: str  # CREATE or UPDATE
    parameters: list[tuple[str, str, str]] = field(default_factory=list)  # (name, before, after)
    changes: list[dict[str, Any]] = field(default_factory=list)  # DescribeChangeSet's ResourceChange entries
    empty: bool = False  # CloudFormation found nothing to change


# --- artifacts and versions ---------------------------------------------------------------------------------------


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


def git_commit() -> str:
    """The checkout's commit, `+dirty` when files differ from it; `unknown` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def local_version(wheel: Path, workdir: Path) -> Version:
    """The version this checkout builds: named by the SHA-256 of its four files' contents."""
    template = TEMPLATE.read_text()
    workdir.mkdir(parents=True, exist_ok=True)
    compact = workdir / "template.json"  # uploaded as sent: what a rollback re-applies
    compact.write_text(json.dumps(json.loads(template), separators=(",", ":")))
    files = {
        wheel.name: wheel,
        "glue_entry.py": ROOT / "streaming" / "cli" / "glue_entry.py",
        "glue.toml": ROOT / "checkpoints_conf" / "glue.toml",
        "template.json": compact,
    }
    digests = {name: content_digest(path) for name, path in files.items()}
    name = hashlib.sha256("".join(f"{n}:{d}\n" for n, d in sorted(digests.items())).encode()).hexdigest()[:12]
    return Version(name, files, digests, wheel.name, git_commit(), compact.read_text())


def manifest(version: Version) -> dict[str, Any]:
    return {
        "version": version.name,
        "commit": version.commit,
        "wheel": version.wheel,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": dict(version.digests),
    }


def upload_version(s3: Any, bucket: str, prefix: str, version: Version, *, dry_run: bool) -> dict[str, bool]:
    """Upload the version's files under <prefix><version>/ unless already there; returns {key: uploaded}."""
    base = f"{prefix}{version.name}/"
    uploaded = {}
    for name, path in version.files.items():
        key, digest = base + name, version.digests[name]
        uploaded[key] = _stored_digest(s3, bucket, key) != digest
        if uploaded[key] and not dry_run:
            s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {DIGEST_KEY: digest}})
    key = base + "manifest.json"
    uploaded[key] = _stored_digest(s3, bucket, key) is None
    if uploaded[key] and not dry_run:  # written last: a version with a manifest is complete
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest(version), indent=2).encode())
    return uploaded


def _stored_digest(s3: Any, bucket: str, key: str) -> str | None:
    try:
        metadata = s3.head_object(Bucket=bucket, Key=key)["Metadata"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return str(metadata.get(DIGEST_KEY, ""))


def stored_version(s3: Any, bucket: str, prefix: str, name: str) -> Version:
    """A version uploaded before (for --version / --rollback): its manifest and template from the bucket."""
    base = f"{prefix}{name}/"
    try:
        found = json.loads(s3.get_object(Bucket=bucket, Key=base + "manifest.json")["Body"].read())
        template = s3.get_object(Bucket=bucket, Key=base + "template.json")["Body"].read().decode()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            raise DeployError(
                f"no version {name} under s3://{bucket}/{prefix} (python deploy/deploy.py --list-versions lists them)",
                EXIT_USAGE,
            ) from exc
        raise
    return Version(name, {}, found["files"], found["wheel"], found["commit"], template)


def list_versions(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Every complete version under the prefix (one with a manifest), oldest first."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
    folders = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
    found = []
    for folder in folders:
        try:
            body = s3.get_object(Bucket=bucket, Key=folder + "manifest.json")["Body"].read()
        except ClientError:
            continue  # not a version (or an upload cut short before its manifest)
        found.append(json.loads(body))
    return sorted(found, key=lambda m: m["built_at"])


# --- parameters ---------------------------------------------------------------------------------------------------


def _allows(spec: Mapping[str, Any], value: str) -> bool:
    """Whether the template's parameter definition accepts `value` (its AllowedValues / AllowedPattern)."""
    if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
        return False
    return not ("AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value))


def resolve_parameters(
    template: Mapping[str, Any], given: Mapping[str, str], previous: Mapping[str, str] | None
) -> tuple[list[dict[str, Any]], dict[str, str], list[str]]:
    """CloudFormation's Parameters for this deploy, the values they resolve to, and notes to print.

    A parameter given keeps its given value; one not given keeps the stack's previous value (UsePreviousValue), or
    takes the template's default on a new stack. A previous value the template no longer allows (a value retired
    from AllowedValues, a default turned into a choice) falls back to the default, and a note says so.
    """
    specs = template["Parameters"]
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise DeployError(f"unknown parameter(s) {', '.join(unknown)}; the template has: {', '.join(specs)}", 2)
    request: list[dict[str, Any]] = []
    values: dict[str, str] = {}
    notes: list[str] = []
    missing = []
    for name, spec in specs.items():
        default = str(spec["Default"]) if "Default" in spec else None
        if name in given:
            request.append({"ParameterKey": name, "ParameterValue": given[name]})
            values[name] = given[name]
        elif previous is not None and name in previous and _allows(spec, previous[name]):
            request.append({"ParameterKey": name, "UsePreviousValue": True})
            values[name] = previous[name]
        elif default is not None:
            if previous is not None and name in previous:
                notes.append(
                    f"{name}: the stack's {previous[name]!r} is no longer allowed; using the default {default!r}"
                )
                request.append({"ParameterKey": name, "ParameterValue": default})
            values[name] = default  # a new stack (or a new parameter) takes the template's default
        else:
            missing.append(name)
    if missing:
        flags = ", ".join(f"--param {m}=..." for m in missing)
        raise DeployError(f"no value for {', '.join(missing)}: pass {flags} (or its flag)", EXIT_USAGE)
    return request, values, notes


# --- CloudFormation -----------------------------------------------------------------------------------------------


def describe_stack(cfn: Any, stack: str) -> dict[str, Any] | None:
    """The stack, or None when there is none of that name (access errors are raised, not read as 'none')."""
    try:
        described: dict[str, Any] = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        return described
    except ClientError as exc:
        error = exc.response["Error"]
        if error.get("Code") == "ValidationError" and "does not exist" in error.get("Message", ""):
            return None
        raise


def create_plan(
    cfn: Any,
    stack: str,
    exists: bool,
    body: str,
    request: list[dict[str, Any]],
    tags: Mapping[str, str],
    description: str,
) -> Plan:
    """Create a change set and describe it with its property changes (the change set stays, to be executed)."""
    kind = "UPDATE" if exists else "CREATE"
    name = f"deploy-{datetime.now(UTC):%Y%m%d-%H%M%S}-{tags.get(VERSION_TAG, 'x')}"
    plan = Plan(name, kind)
    try:
        cfn.create_change_set(
            StackName=stack,
            ChangeSetName=name,
            ChangeSetType=kind,
            TemplateBody=body,
            Parameters=request,
            Capabilities=["CAPABILITY_IAM"],
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            Description=description[:1024],
        )
    except ClientError as exc:
        # AWS makes a FAILED change set for "no changes" (below); a stand-in may refuse the request instead.
        if "No updates are to be performed" not in str(exc):
            raise
        plan.empty = True
        return plan
    try:
        cfn.get_waiter("change_set_create_complete").wait(
            StackName=stack, ChangeSetName=name, WaiterConfig={"Delay": 5, "MaxAttempts": 120}
        )
    except WaiterError:
        described = cfn.describe_change_set(StackName=stack, ChangeSetName=name)
        reason = described.get("StatusReason", "")
        if "didn't contain changes" in reason or "No updates are to be performed" in reason:
            plan.empty = True
            return plan
        discard_plan(cfn, stack, plan)
        raise DeployError(f"stack {stack}: CloudFormation refused the change set: {reason}", EXIT_USAGE) from None
    for page in _change_set_pages(cfn, stack, name):
        plan.changes += [c["ResourceChange"] for c in page.get("Changes", []) if c.get("Type") == "Resource"]
    return plan


def _change_set_pages(cfn: Any, stack: str, name: str) -> Iterator[dict[str, Any]]:
    token = None
    while True:
        extra: dict[str, str] = {"NextToken": token} if token else {}
        page = cfn.describe_change_set(StackName=stack, ChangeSetName=name, IncludePropertyValues=True, **extra)
        yield page
        token = page.get("NextToken")
        if not token:
            return


def discard_plan(cfn: Any, stack: str, plan: Plan) -> None:
    """Delete a change set not executed; a CREATE one also leaves an empty stack (REVIEW_IN_PROGRESS) to delete."""
    cfn.delete_change_set(StackName=stack, ChangeSetName=plan.name)
    if plan.kind == "CREATE":
        cfn.delete_stack(StackName=stack)
        cfn.get_waiter("stack_delete_complete").wait(StackName=stack)


def _short(value: Any, width: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def plan_lines(plan: Plan) -> list[str]:
    """The change set as printed before the confirmation: parameters, then resources with their property changes."""
    lines = []
    if plan.parameters:
        lines.append("parameters:")
        width = max(len(n) for n, _, _ in plan.parameters)
        lines += [f"  {n:<{width}}  {_short(b, 40)} -> {_short(a, 40)}" for n, b, a in plan.parameters]
    if plan.changes:
        lines.append("resources:")
    for change in plan.changes:
        replaced = change.get("Replacement") in ("True", "Conditional")  # a new physical resource: name it
        replacement = f" (replacement: {change['Replacement']})" if replaced else ""
        lines.append(f"  {change['Action']:<8} {change['LogicalResourceId']} {change['ResourceType']}{replacement}")
        for detail in change.get("Details", []):
            target = detail.get("Target", {})
            where = target.get("Path") or ".".join(filter(None, (target.get("Attribute"), target.get("Name"))))
            if "BeforeValue" in target or "AfterValue" in target:
                before, after = target.get("BeforeValue", ""), target.get("AfterValue", "")
                lines.append(f"           {where}: {_short(before, 50)} -> {_short(after, 50)}")
            else:
                recreate = target.get("RequiresRecreation", "")
                lines.append(f"           {where}" + (f" (recreation: {recreate})" if recreate else ""))
    return lines


def failure_events(cfn: Any, stack: str, since: datetime, limit: int = 10) -> list[str]:
    """The stack's failed resource events since `since`, oldest first (the first one is usually the cause)."""
    failed: list[dict[str, Any]] = []
    for page in cfn.get_paginator("describe_stack_events").paginate(StackName=stack):
        for event in page["StackEvents"]:
            if event["Timestamp"] < since:
                return [_event_line(e) for e in reversed(failed)][:limit]
            if event["ResourceStatus"].endswith("_FAILED") and event.get("ResourceStatusReason"):
                failed.append(event)
    return [_event_line(e) for e in reversed(failed)][:limit]


def _event_line(event: Mapping[str, Any]) -> str:
    reason = " ".join(str(event.get("ResourceStatusReason", "")).split())
    return f"  {event['LogicalResourceId']} {event['ResourceType']} {event['ResourceStatus']}: {_short(reason, 160)}"


def execute_plan(cfn: Any, stack: str, plan: Plan, *, poll_seconds: float = 10.0) -> str:
    """Execute the change set that was printed and wait; raises DeployError with the failure events if it fails."""
    started = datetime.now(UTC)
    cfn.execute_change_set(StackName=stack, ChangeSetName=plan.name)
    waiter = "stack_create_complete" if plan.kind == "CREATE" else "stack_update_complete"
    try:
        cfn.get_waiter(waiter).wait(
            StackName=stack, WaiterConfig={"Delay": poll_seconds, "MaxAttempts": int(7200 / poll_seconds)}
        )
    except WaiterError:
        status = (describe_stack(cfn, stack) or {}).get("StackStatus", "DELETED")
        events = failure_events(cfn, stack, started - _CLOCK_SKEW)
        what = (
            "the update failed and was rolled back: the job still runs the version it ran before"
            if status == "UPDATE_ROLLBACK_COMPLETE"
            else STUCK.get(status, "see the stack's events").format(stack=stack)
        )
        block = [f"stack {stack}: {status}: {what}", *(events or ["  (no failure events found)"])]
        raise DeployError("\n".join(block), EXIT_FAILED) from None
    return str((describe_stack(cfn, stack) or {}).get("StackStatus", ""))


_CLOCK_SKEW = timedelta(seconds=60)  # our clock against CloudFormation's event times


# --- the Glue job -------------------------------------------------------------------------------------------------


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


def stop_job(glue: Any, job_name: str, *, timeout_seconds: float = 900.0, poll_seconds: float = 10.0) -> list[str]:
    """Stop the job's active runs and wait until every unfinished one has ended; returns the runs stopped."""
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
    return to_stop


def restart_job(glue: Any, job_name: str, *, timeout_seconds: float = 900.0, poll_seconds: float = 10.0) -> Restart:
    """Stop the job's active runs, wait until they finish, then start one run with the job's DefaultArguments."""
    stopped = stop_job(glue, job_name, timeout_seconds=timeout_seconds, poll_seconds=poll_seconds)
    checkpoint = glue.get_job(JobName=job_name)["Job"].get("DefaultArguments", {}).get("--checkpoint", "")
    # No Arguments: the run takes the job's DefaultArguments, the same --checkpoint and warehouse as the last run.
    started = glue.start_job_run(JobName=job_name)["JobRunId"]
    return Restart(tuple(stopped), started, checkpoint)


def restart_reasons(plan: Plan, running: str, deployed: str, forced: bool) -> list[str]:
    """Why the job needs a new run (empty: its runs use the deployed definition already).

    A run keeps the job definition it started with, so a new version or a changed job needs a new run; a changed
    alarm, dashboard or policy does not (IAM changes reach a running job at once).
    """
    reasons = ["--restart"] if forced else []
    if deployed != running:
        reasons.append(f"version {running} -> {deployed}")
    if any(c["LogicalResourceId"] == "StreamingJob" for c in plan.changes) and deployed == running:
        reasons.append("the Glue job changed")
    return reasons


# --- command line -------------------------------------------------------------------------------------------------

# Flags for the parameters operators set most; every other one through --param NAME=VALUE.
NAMED_PARAMETERS = {
    "landing_bucket": "LandingBucket",
    "landing_prefix": "LandingPrefix",
    "archive_prefix": "ArchivePrefix",
    "lakehouse_bucket": "LakehouseBucket",
    "warehouse_prefix": "WarehousePrefix",
    "artifacts_bucket": "ArtifactsBucket",
    "artifacts_prefix": "ArtifactsPrefix",
    "job_command": "JobCommand",
    "kms_key_arn": "KmsKeyArn",
    "alarm_email": "AlarmEmail",
    "ledger_table": "LedgerTableName",
    "reader_principal": "ReaderPrincipal",
}
# Parameters deploy.py sets itself from the version it deploys.
VERSION_PARAMETERS = ("ArtifactsVersion", "PreviousVersion", "WheelName")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deploy.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--stack", default="bronze-encounter", help="stack name; a new stack's JobName too (default %(default)s)"
    )
    p.add_argument("--region", help="AWS region (default: the profile's or AWS_REGION), as in the AWS CLI")
    p.add_argument("--profile", help="named profile from ~/.aws/config (default: AWS_PROFILE or the default chain)")
    p.add_argument("--landing-bucket", help="bucket where FHIR files land (required for a new stack)")
    p.add_argument(
        "--landing-prefix", help="prefix the files land under, ending in / (template default fhir/encounter/)"
    )
    p.add_argument(
        "--archive-prefix",
        help="where ingested files are moved, beside the landing prefix (template default fhir/archive/); "
        "off: files stay where they land and every trigger lists all of them (README, Deploy to AWS)",
    )
    p.add_argument("--lakehouse-bucket", help="bucket of the Hudi tables (required for a new stack)")
    p.add_argument("--warehouse-prefix", help="prefix of the Hudi tables (template default bronze/)")
    p.add_argument("--artifacts-bucket", help="bucket for the versions (required for a new stack)")
    p.add_argument("--artifacts-prefix", help="prefix of the versions in it (template default bronze-encounter/)")
    p.add_argument("--job-command", choices=["gluestreaming", "glueetl"])
    p.add_argument("--kms-key-arn", help="an existing KMS key; empty (the template default): the stack creates one")
    p.add_argument("--alarm-email", help="address subscribed to the alarm topic")
    p.add_argument("--ledger-table", help="DynamoDB table of the ledger (template default bronze_encounter_ledger)")
    p.add_argument("--reader-principal", help="account id or role ARN that may assume the analysts' reader role")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any template parameter, repeatable, e.g. --param WorkerType=G.2X --param StalledMinutes=30",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--wheel", type=Path, help="a wheel built already (default: build one from this checkout)")
    which.add_argument(
        "--version",
        help="deploy a version uploaded before (its template and artifacts), no build; running: the one the stack runs "
        "(a parameter change alone)",
    )
    which.add_argument("--rollback", action="store_true", help="deploy the stack's PreviousVersion")
    which.add_argument("--list-versions", action="store_true", help="list the versions in the artifacts bucket")
    p.add_argument("--dry-run", action="store_true", help="print the change set and the uploads, change nothing")
    p.add_argument("--yes", action="store_true", help="execute the change set without asking (automation)")
    restart = p.add_mutually_exclusive_group()
    restart.add_argument("--restart", action="store_true", help="restart the job even when nothing changed")
    restart.add_argument("--no-restart", action="store_true", help="leave the job's runs alone")
    p.add_argument("--stop-timeout", type=float, default=900.0, help="seconds to wait for stopped runs (default 900)")
    return p


def _given(args: argparse.Namespace) -> dict[str, str]:
    given = {param: getattr(args, flag) for flag, param in NAMED_PARAMETERS.items() if getattr(args, flag) is not None}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise DeployError(f"--param expects NAME=VALUE, got {item!r}", EXIT_USAGE)
        given[name.strip()] = value
    reserved = sorted(set(given) & set(VERSION_PARAMETERS))
    if reserved:
        raise DeployError(f"{', '.join(reserved)} name the version: use --version or --rollback", EXIT_USAGE)
    return given


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


@dataclass(frozen=True)
class Target:
    """The stack as found before a deploy, and where its versions live."""

    name: str
    exists: bool
    previous: Mapping[str, str]  # its parameter values ({} for a new stack)
    bucket: str
    prefix: str

    @property
    def running(self) -> str:
        return self.previous.get("ArtifactsVersion", "none") if self.exists else "none"


def find_target(cfn: Any, args: argparse.Namespace, given: Mapping[str, str]) -> Target:
    """The stack to deploy to; a stack in a state no deploy can act on stops here, saying what to do."""
    stack = args.stack
    current = describe_stack(cfn, stack)
    status = (current or {}).get("StackStatus", "")
    if status in STUCK:
        events = failure_events(cfn, stack, datetime.fromtimestamp(0, UTC), limit=5)
        message = f"stack {stack} is {status}: " + STUCK[status].format(stack=stack)
        raise DeployError("\n".join([message, *events]), EXIT_STACK_STATE)
    if status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS":
        raise DeployError(f"stack {stack} is {status}: wait until it ends, then deploy again", EXIT_STACK_STATE)
    exists = current is not None and status != "REVIEW_IN_PROGRESS"  # REVIEW_IN_PROGRESS: a CREATE never executed
    previous = {p["ParameterKey"]: p.get("ParameterValue", "") for p in (current or {}).get("Parameters", [])}
    previous = previous if exists else {}
    bucket = given.get("ArtifactsBucket") or previous.get("ArtifactsBucket")
    if not bucket:
        raise DeployError(f"stack {stack} is new: pass --artifacts-bucket (and the landing and lakehouse buckets)", 2)
    prefix = given.get("ArtifactsPrefix") or previous.get("ArtifactsPrefix") or "bronze-encounter/"
    return Target(stack, exists, previous, bucket, prefix)


def choose_version(s3: Any, args: argparse.Namespace, target: Target, workdir: Path) -> Version:
    """This checkout's version (built into `workdir`), or one uploaded before (--version, --rollback)."""
    if not (args.rollback or args.version):
        return local_version(args.wheel or build_wheel(workdir), workdir)
    name = target.previous.get("PreviousVersion", "none") if args.rollback else args.version
    if name == "running":  # a parameter-only deploy: no build, the job keeps its code
        name = target.running
    if not target.exists or name in ("", "none"):
        raise DeployError(f"stack {target.name}: no earlier version recorded to roll back to", EXIT_USAGE)
    return stored_version(s3, target.bucket, target.prefix, name)


def deploy(args: argparse.Namespace, session: Any, confirm: Callable[[str], bool] = _confirm) -> int:
    cfn, s3 = session.client("cloudformation"), session.client("s3")
    session.client("sts").get_caller_identity()  # fail on credentials here, before anything is built or uploaded
    given = _given(args)
    target = find_target(cfn, args, given)
    stack, previous = target.name, target.previous
    if args.list_versions:
        _print_versions(s3, target)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        version = choose_version(s3, args, target, Path(tmp))
        if len(version.template.encode()) > TEMPLATE_BODY_LIMIT:
            raise DeployError(f"the template is over CloudFormation's {TEMPLATE_BODY_LIMIT} bytes", EXIT_USAGE)
        running = target.running
        derived = {"ArtifactsVersion": version.name, "WheelName": version.wheel}
        # PreviousVersion moves on only with the version: a parameter-only deploy keeps what --rollback returns to.
        derived["PreviousVersion"] = running if version.name != running else previous.get("PreviousVersion", "none")
        if not target.exists:
            derived["JobName"] = given.get("JobName", stack)
        template = json.loads(version.template)
        request, values, notes = resolve_parameters(template, {**given, **derived}, previous if target.exists else None)
        tags = {VERSION_TAG: version.name, COMMIT_TAG: version.commit}
        plan = create_plan(cfn, stack, target.exists, version.template, request, tags, f"version {version.name}")
        plan.parameters = [(n, previous[n], v) for n, v in values.items() if n in previous and previous[n] != v]
        # Listed before the question, uploaded only once the change set is confirmed.
        uploads = upload_version(s3, target.bucket, target.prefix, version, dry_run=True) if version.files else {}

        _print_plan(target, version, notes, uploads, plan)
        job = values["JobName"]
        reasons = [] if args.no_restart else restart_reasons(plan, running, version.name, args.restart)
        why = "--no-restart" if args.no_restart else ", ".join(reasons) or "nothing changed"
        if args.dry_run:
            if not plan.empty:
                discard_plan(cfn, stack, plan)
            print(f"job {job}: {'would restart' if reasons else 'would not restart'} ({why})")
            changes, count = len(plan.changes), sum(uploads.values())
            print(f"stack {stack}: dry run, {changes} change(s), {count} upload(s); nothing deployed")
            return 0
        if plan.empty:
            print(f"stack {stack}: nothing to deploy")
        else:
            _apply(cfn, s3, args, target, version, plan, confirm)
    if not reasons:
        print(f"job {job}: not restarted ({why})")
        return 0
    return _restart(session, job, why, args.stop_timeout)


def _print_versions(s3: Any, target: Target) -> None:
    """--list-versions: every version uploaded to the stack's artifacts, the running one marked."""
    for m in list_versions(s3, target.bucket, target.prefix):
        mark = "  <- running" if m["version"] == target.running else ""
        print(f"{m['version']}  built {m['built_at']}  commit {m['commit']}{mark}")


def _print_plan(target: Target, version: Version, notes: list[str], uploads: dict[str, bool], plan: Plan) -> None:
    """What the deploy would do: the version change, notes on parameters, the uploads and the change set."""
    print(f"stack {target.name}: version {target.running} -> {version.name} (commit {version.commit})")
    print(*(f"note: {n}" for n in notes), sep="\n", end="\n" if notes else "")
    for key, uploaded in uploads.items():
        print(f"{'upload' if uploaded else 'same':<8} s3://{target.bucket}/{key}")
    print(*(plan_lines(plan) or ["no changes"]), sep="\n")


def _apply(
    cfn: Any,
    s3: Any,
    args: argparse.Namespace,
    target: Target,
    version: Version,
    plan: Plan,
    confirm: Callable[[str], bool],
) -> None:
    """Once confirmed (or --yes): upload the version's files, then execute the change set."""
    stack = target.name
    if not args.yes and not confirm(f"Execute change set {plan.name} on stack {stack}?"):
        discard_plan(cfn, stack, plan)
        raise DeployError(
            f"stack {stack}: not confirmed; the change set is deleted and nothing changed"
            " (--yes executes without asking)",
            EXIT_NOT_CONFIRMED,
        )
    # New keys: the running job keeps the version it names until the update below succeeds.
    if version.files:
        upload_version(s3, target.bucket, target.prefix, version, dry_run=False)
    print(f"stack {stack}: {execute_plan(cfn, stack, plan)}, version {version.name}")


def _restart(session: Any, job: str, why: str, stop_timeout: float) -> int:
    """Restart the Glue job on its checkpoint; EXIT_FAILED (the stack stays deployed) when it cannot."""
    print(f"job {job}: restarting ({why})")
    try:
        done = restart_job(session.client("glue"), job, timeout_seconds=stop_timeout)
    except (JobStopFailed, JobStopTimedOut, ClientError) as exc:
        # A ClientError: no such job, no permission, or a run started meanwhile (ConcurrentRunsExceededException).
        failure = str(exc) if isinstance(exc, RuntimeError) else f"job {job}: {exc}"
        advice = f"job {job}: the stack is deployed, the job not restarted (rerun with --restart)"
        print(failure, advice, sep="\n", file=sys.stderr)
        return EXIT_FAILED
    print(f"job {job}: stopped run(s) {', '.join(done.stopped)}" if done.stopped else f"job {job}: no run to stop")
    print(f"job {job}: started run {done.started}, resuming from {done.checkpoint or 'the checkpoint in glue.toml'}")
    return 0


def _access_message(stack: str, exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        operation = getattr(exc, "operation_name", "a call")
        first = str(error.get("Message", "")).splitlines()[0] if error.get("Message") else ""
        what = f"AWS refused {operation} ({error.get('Code')}): {first}"
    else:
        what = f"{type(exc).__name__}: {exc}"
    return (
        f"stack {stack}: {what}\nCheck the credentials (--profile or AWS_PROFILE), the region (--region or "
        "AWS_REGION) and that the deployer may use CloudFormation, S3, STS and Glue (README, Deploy to AWS)"
    )


def main(argv: list[str] | None = None, session: Any = None, confirm: Callable[[str], bool] = _confirm) -> int:
    args = parser().parse_args(argv)
    try:
        if session is None:
            session = boto3.session.Session(profile_name=args.profile, region_name=args.region)
        return deploy(args, session, confirm)
    except DeployError as exc:
        print(str(exc), file=sys.stderr)
        return exc.code
    except (NoCredentialsError, NoRegionError, ProfileNotFound, EndpointConnectionError) as exc:
        print(_access_message(args.stack, exc), file=sys.stderr)
        return EXIT_ACCESS
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ACCESS_CODES:
            print(_access_message(args.stack, exc), file=sys.stderr)
            return EXIT_ACCESS
        if exc.response.get("Error", {}).get("Code") == "ValidationError":
            print(f"stack {args.stack}: CloudFormation refused the request: {exc}", file=sys.stderr)
            return EXIT_USAGE
        raise
    except BotoCoreError as exc:
        print(_access_message(args.stack, exc), file=sys.stderr)
        return EXIT_ACCESS


if __name__ == "__main__":
    sys.exit(main())
