"""Operator tasks on a deployed stack, each a few AWS calls (docs/operations.md says when and in which order).

    python deploy/ops.py stop --stack S                  # stop the job's runs and wait until they ended
    python deploy/ops.py start --stack S                 # one run with the job's own arguments (its checkpoint)
    python deploy/ops.py alarms --stack S off|on         # silence the alarms' notifications for planned work
    python deploy/ops.py land --stack S --from s3://b/p/ --into backfill/2026-05/   # copy files into landing
    python deploy/ops.py checkpoint --stack S --move-aside          # a broken checkpoint out of the job's way
    python deploy/ops.py checkpoint --stack S --copy-from s3://...  # an old checkpoint into the stack's path
    python deploy/ops.py ledger-restore --stack S --to 2026-12-06T09:00:00Z   # a point-in-time copy, to inspect
    python deploy/ops.py ledger-copy-back --stack S --from TABLE    # make the live ledger equal that copy
    python deploy/ops.py rotate-key --stack S            # new key material now (the key rotates yearly anyway)
    python deploy/ops.py archive-lifecycle --stack S --expire-days 365 [--glacier-days 30]
    python deploy/ops.py delete-stack --stack S [--yes]  # what goes and stays; --yes: stop the job, delete the stack

Every command reads the stack (its parameters and outputs) for names; --region/--profile as in the AWS CLI.
Exit codes: 0 done, 1 the task failed (the message says where it stopped), 2 bad arguments or a refusal that
protects data (the message says why), 3 AWS refused the caller (credentials, region, permissions).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

LIFECYCLE_RULE = "bronze-encounter-archive"  # the rule id archive-lifecycle owns in the landing bucket


def _deploy_py() -> ModuleType:
    """deploy.py beside this file (a script, not a package module): the job control and error handling it has."""
    name = "bronze_encounter_deploy"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("deploy.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve their annotations through it
        spec.loader.exec_module(module)
    return sys.modules[name]


class OpsError(Exception):
    """A task stopped: the message says what happened and what to do; `code` is the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Stack:
    """The deployed stack's names, from its parameters and outputs."""

    name: str
    parameters: dict[str, str]
    outputs: dict[str, str]

    @property
    def job(self) -> str:
        return self.parameters["JobName"]

    @property
    def ledger(self) -> str:
        return self.parameters["LedgerTableName"]


def read_stack(cfn: Any, name: str) -> Stack:
    try:
        found = cfn.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" in str(exc):
            raise OpsError(f"stack {name} does not exist (in this region: --region)", 2) from exc
        raise
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in found.get("Parameters", [])}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
    return Stack(name, parameters, outputs)


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


# --- the job ------------------------------------------------------------------------------------------------------


def stop(session: Any, stack: Stack, timeout: float) -> list[str]:
    stopped: list[str] = _deploy_py().stop_job(session.client("glue"), stack.job, timeout_seconds=timeout)
    print(f"job {stack.job}: " + (f"stopped run(s) {', '.join(stopped)}" if stopped else "no run was active"))
    print(f"job {stack.job}: no run active; its checkpoint and the ledger keep where it stopped")
    return stopped


def start(session: Any, stack: Stack) -> str:
    glue = session.client("glue")
    checkpoint = glue.get_job(JobName=stack.job)["Job"].get("DefaultArguments", {}).get("--checkpoint", "")
    run: str = glue.start_job_run(JobName=stack.job)["JobRunId"]  # no Arguments: the job's own, so its checkpoint
    print(f"job {stack.job}: started run {run}, resuming from {checkpoint}")
    return run


def alarms(session: Any, stack: Stack, state: str) -> list[str]:
    """Turn the stack's alarms' actions off (planned work) or on again; they keep evaluating either way."""
    cloudwatch = session.client("cloudwatch")
    pages = cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=f"{stack.job}-")
    names = [a["AlarmName"] for page in pages for a in page["MetricAlarms"]]
    for i in range(0, len(names), 100):  # the API takes at most 100 names
        call = cloudwatch.enable_alarm_actions if state == "on" else cloudwatch.disable_alarm_actions
        call(AlarmNames=names[i : i + 100])
    print(f"alarms of {stack.job}: actions {state} for {len(names)} alarm(s)")
    if state == "off":
        print(
            f"alarms of {stack.job}: turn them on again when done: python deploy/ops.py alarms --stack {stack.name} on"
        )
    return names


# --- files --------------------------------------------------------------------------------------------------------


def land(session: Any, stack: Stack, source: str, into: str) -> int:
    """Copy every object under `source` into the landing prefix (under `into`): the stream takes them as new files."""
    s3 = session.client("s3")
    bucket, prefix = _split(source)
    landing_bucket, landing = stack.parameters["LandingBucket"], stack.parameters["LandingPrefix"]
    if into and not into.endswith("/"):
        raise OpsError(f"--into must end with /: {into}", 2)
    archive = stack.parameters.get("ArchivePrefix", "off")
    if bucket == landing_bucket and (prefix.startswith(landing) or (archive != "off" and prefix.startswith(archive))):
        # Files under the landing prefix are there already; archived ones were ingested: reingest takes those.
        raise OpsError(f"{source} is inside the landing or archive prefix: use bronze-encounter reingest for those", 2)
    copied = 0
    for item in _objects(s3, bucket, prefix):
        relative = item["Key"][len(prefix) :]
        if not relative or relative.endswith("/"):
            continue  # a folder marker
        target = f"{landing}{into}{relative}"
        s3.copy({"Bucket": bucket, "Key": item["Key"]}, landing_bucket, target)
        copied += 1
    print(f"landed {copied} file(s) from {source} under s3://{landing_bucket}/{landing}{into}")
    return copied


def _checkpoint(stack: Stack) -> tuple[str, str]:
    if "Checkpoint" not in stack.outputs:
        raise OpsError(f"stack {stack.name} has no Checkpoint output: deploy this version of the template first", 2)
    return _split(stack.outputs["Checkpoint"])


def move_checkpoint_aside(session: Any, stack: Stack) -> str:
    """Move the checkpoint's objects to <checkpoint>.aside-<time>/, so the next run starts a fresh one."""
    s3 = session.client("s3")
    bucket, prefix = _checkpoint(stack)
    aside = f"{prefix.rstrip('/')}.aside-{datetime.now(UTC):%Y%m%dT%H%M%SZ}/"
    moved = 0
    for item in _objects(s3, bucket, prefix):
        s3.copy({"Bucket": bucket, "Key": item["Key"]}, bucket, aside + item["Key"][len(prefix) :])
        s3.delete_object(Bucket=bucket, Key=item["Key"])
        moved += 1
    print(f"checkpoint s3://{bucket}/{prefix}: {moved} object(s) moved to s3://{bucket}/{aside}")
    return f"s3://{bucket}/{aside}"


def copy_checkpoint(session: Any, stack: Stack, source: str) -> int:
    """Copy an old checkpoint into the stack's checkpoint path; refused when that path holds one already."""
    s3 = session.client("s3")
    bucket, prefix = _checkpoint(stack)
    if next(_objects(s3, bucket, prefix), None) is not None:
        raise OpsError(f"s3://{bucket}/{prefix} holds a checkpoint already: move it aside first (--move-aside)", 2)
    from_bucket, from_prefix = _split(source.rstrip("/") + "/")
    copied = 0
    for item in _objects(s3, from_bucket, from_prefix):
        s3.copy({"Bucket": from_bucket, "Key": item["Key"]}, bucket, prefix + item["Key"][len(from_prefix) :])
        copied += 1
    if not copied:
        raise OpsError(f"no checkpoint under {source}", 2)
    print(f"checkpoint: {copied} object(s) copied from {source} to s3://{bucket}/{prefix}")
    return copied


def archive_lifecycle(session: Any, stack: Stack, expire_days: int, glacier_days: int | None) -> dict[str, Any]:
    """Add (or replace) the archive's lifecycle rule in the landing bucket, keeping every other rule there."""
    archive = stack.parameters.get("ArchivePrefix", "off")
    if archive == "off":
        raise OpsError(f"stack {stack.name} does not archive (ArchivePrefix=off): there is nothing to expire", 2)
    if glacier_days is not None and glacier_days >= expire_days:
        raise OpsError("--glacier-days must be fewer than --expire-days", 2)
    s3, bucket = session.client("s3"), stack.parameters["LandingBucket"]
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    rule: dict[str, Any] = {
        "ID": f"{LIFECYCLE_RULE}-{stack.name}"[:255],
        "Filter": {"Prefix": archive},
        "Status": "Enabled",
        "Expiration": {"Days": expire_days},
    }
    if glacier_days is not None:
        rule["Transitions"] = [{"Days": glacier_days, "StorageClass": "GLACIER_IR"}]
    kept = [r for r in rules if r.get("ID") != rule["ID"]]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [*kept, rule]})
    move = f", Glacier Instant Retrieval after {glacier_days} days" if glacier_days is not None else ""
    print(f"s3://{bucket}/{archive}: archived files expire after {expire_days} days{move}; {len(kept)} rule(s) kept")
    return rule


# --- the ledger ---------------------------------------------------------------------------------------------------


def ledger_restore(session: Any, stack: Stack, to: datetime, into: str = "") -> str:
    """Restore the ledger as it was at `to` into a new table (the live one is untouched), encrypted with the key."""
    dynamodb = session.client("dynamodb")
    copy = into or f"{stack.ledger}-restored-{to:%Y%m%dT%H%M%SZ}"
    request: dict[str, Any] = {
        "SourceTableName": stack.ledger,
        "TargetTableName": copy,
        "RestoreDateTime": to,
    }
    if stack.outputs.get("KeyArn"):
        request["SSESpecificationOverride"] = {
            "Enabled": True,
            "SSEType": "KMS",
            "KMSMasterKeyId": stack.outputs["KeyArn"],
        }
    dynamodb.restore_table_to_point_in_time(**request)
    dynamodb.get_waiter("table_exists").wait(TableName=copy, WaiterConfig={"Delay": 10, "MaxAttempts": 360})
    items = sum(page["Count"] for page in dynamodb.get_paginator("scan").paginate(TableName=copy, Select="COUNT"))
    print(f"ledger {stack.ledger} as of {to.isoformat()}: restored into {copy} ({items} item(s)); live one unchanged")
    print(f"inspect it, then: python deploy/ops.py ledger-copy-back --stack {stack.name} --from {copy}")
    return copy


def ledger_copy_back(session: Any, stack: Stack, source: str, *, delete_source: bool) -> tuple[int, int]:
    """Make the live ledger hold exactly the items of `source`: put every one, delete the live ones it lacks."""
    dynamodb = session.client("dynamodb")
    if source == stack.ledger:
        raise OpsError("--from names the live ledger itself", 2)
    scan = dynamodb.get_paginator("scan")
    wanted = [item for page in scan.paginate(TableName=source, ConsistentRead=True) for item in page["Items"]]
    keys = {item["pk"]["S"] for item in wanted}
    pages = scan.paginate(TableName=stack.ledger, ConsistentRead=True, ProjectionExpression="pk")
    stale = [item["pk"]["S"] for page in pages for item in page["Items"] if item["pk"]["S"] not in keys]
    requests = [{"PutRequest": {"Item": item}} for item in wanted]
    requests += [{"DeleteRequest": {"Key": {"pk": {"S": pk}}}} for pk in stale]
    for i in range(0, len(requests), 25):  # BatchWriteItem takes 25
        pending = {stack.ledger: requests[i : i + 25]}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems", {})
            if pending:
                time.sleep(1)  # throttled: retry what was left
    print(f"ledger {stack.ledger}: {len(wanted)} item(s) written from {source}, {len(stale)} item(s) it lacked deleted")
    if delete_source:
        dynamodb.delete_table(TableName=source)
        print(f"ledger copy {source}: deleted")
    return len(wanted), len(stale)


# --- the key and the stack ----------------------------------------------------------------------------------------


def rotate_key(session: Any, stack: Stack) -> list[str]:
    """Rotate the stack's key now: new key material, the same key id, old material kept to decrypt old data."""
    kms = session.client("kms")
    if stack.parameters.get("KmsKeyArn"):
        raise OpsError(
            f"stack {stack.name} uses a key it did not create ({stack.parameters['KmsKeyArn']}): its owner rotates it",
            2,
        )
    key = stack.outputs["KeyArn"]
    kms.rotate_key_on_demand(KeyId=key)
    yearly = kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"]
    rotations = [r["RotationDate"].isoformat() for r in kms.list_key_rotations(KeyId=key).get("Rotations", [])]
    print(
        f"key {key}: rotated on demand; yearly rotation {'on' if yearly else 'OFF'}; rotations: {', '.join(rotations)}"
    )
    return rotations


def delete_stack(session: Any, stack: Stack, *, confirmed: bool, timeout: float) -> list[str]:
    """Stop the job, then delete the stack; the ledger, the Glue database, the key and every S3 object stay."""
    retained = [
        f"ledger table {stack.ledger} (DeletionPolicy Retain, point-in-time recovery)",
        f"Glue database {stack.parameters.get('DatabaseName', 'bronze')} and its tables' definitions",
        f"the KMS key {stack.outputs.get('KeyArn', '')} (Retain): the data needs it; a new stack takes it as "
        "--kms-key-arn"
        if not stack.parameters.get("KmsKeyArn")
        else "",
        f"tables, checkpoint and Spark logs in s3://{stack.parameters['LakehouseBucket']}/ (the stack owns no bucket)",
        f"landed and archived files in s3://{stack.parameters['LandingBucket']}/",
        f"every version in s3://{stack.parameters['ArtifactsBucket']}/{stack.parameters.get('ArtifactsPrefix', '')}",
    ]
    retained = [r for r in retained if r]
    if not confirmed:
        print(
            f"stack {stack.name}: deleting it stops the job and removes its role, alarms, dashboard, Athena workgroup"
        )
        print("and reader policy (and role). Nothing is deleted now: rerun with --yes. It keeps:")
        print(*(f"  {r}" for r in retained), sep="\n")
        return retained
    try:
        stop(session, stack, timeout)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "EntityNotFoundException":  # no job: a stack whose creation failed
            raise
    cfn = session.client("cloudformation")
    cfn.delete_stack(StackName=stack.name)
    try:
        cfn.get_waiter("stack_delete_complete").wait(
            StackName=stack.name, WaiterConfig={"Delay": 10, "MaxAttempts": 360}
        )
    except Exception as exc:  # a WaiterError: the deletion stopped on a resource
        raise OpsError(f"stack {stack.name}: deletion did not complete ({exc}); see its events", 1) from exc
    print(f"stack {stack.name}: deleted. Kept:")
    print(*(f"  {r}" for r in retained), sep="\n")
    return retained


# --- command line -------------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ops.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="task", required=True, metavar="TASK")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack", default="bronze-encounter", help="the stack (default %(default)s)")
    common.add_argument("--region", help="AWS region (default: the profile's or AWS_REGION)")
    common.add_argument("--profile", help="named profile (default: AWS_PROFILE or the default chain)")

    def task(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary, parents=[common])

    task("stop", "stop the job's runs and wait until they ended").add_argument("--timeout", type=float, default=900.0)
    task("start", "start one run with the job's own arguments (its checkpoint)")
    task("alarms", "turn the stack's alarm actions off for planned work, or on again").add_argument(
        "state", choices=["off", "on"]
    )
    landing = task("land", "copy files into the landing prefix, where the stream takes them (a backfill)")
    landing.add_argument("--from", dest="source", required=True, metavar="S3_URI", help="s3://bucket/prefix/")
    landing.add_argument("--into", default="", metavar="FOLDER/", help="a folder under the landing prefix")
    checkpoint = task("checkpoint", "move a broken checkpoint aside, or copy an old one into the stack's path")
    which = checkpoint.add_mutually_exclusive_group(required=True)
    which.add_argument("--move-aside", action="store_true")
    which.add_argument("--copy-from", metavar="S3_URI")
    restore = task("ledger-restore", "restore the ledger as it was at a time into a new table (to inspect)")
    restore.add_argument(
        "--to", required=True, type=datetime.fromisoformat, metavar="ISO_TIME", help="e.g. 2026-12-06T09:00:00Z"
    )
    restore.add_argument(
        "--into", default="", metavar="TABLE", help="the copy's name (default <ledger>-restored-<time>)"
    )
    back = task("ledger-copy-back", "make the live ledger hold exactly the items of a restored copy")
    back.add_argument("--from", dest="source", required=True, metavar="TABLE")
    back.add_argument("--delete-copy", action="store_true", help="delete the copy afterwards")
    task("rotate-key", "rotate the stack's KMS key now (it also rotates yearly)")
    lifecycle = task(
        "archive-lifecycle", "expire archived files (and move them to Glacier first) in the landing bucket"
    )
    lifecycle.add_argument("--expire-days", type=int, required=True)
    lifecycle.add_argument("--glacier-days", type=int)
    delete = task("delete-stack", "stop the job and delete the stack, keeping ledger, database, key and data")
    delete.add_argument("--yes", action="store_true")
    delete.add_argument("--timeout", type=float, default=900.0)
    return p


def _checkpoint_task(session: Any, stack: Stack, args: argparse.Namespace) -> None:
    if args.move_aside:
        move_checkpoint_aside(session, stack)
    else:
        copy_checkpoint(session, stack, args.copy_from)


def _ledger_restore_task(session: Any, stack: Stack, args: argparse.Namespace) -> None:
    to = args.to if args.to.tzinfo else args.to.replace(tzinfo=UTC)
    ledger_restore(session, stack, to, args.into)


# Each task's function with its arguments taken from the command line (see `parser`).
_TASKS: dict[str, Callable[[Any, Stack, argparse.Namespace], object]] = {
    "stop": lambda session, stack, args: stop(session, stack, args.timeout),
    "start": lambda session, stack, args: start(session, stack),
    "alarms": lambda session, stack, args: alarms(session, stack, args.state),
    "land": lambda session, stack, args: land(session, stack, args.source, args.into),
    "checkpoint": _checkpoint_task,
    "ledger-restore": _ledger_restore_task,
    "ledger-copy-back": lambda session, stack, args: ledger_copy_back(
        session, stack, args.source, delete_source=args.delete_copy
    ),
    "rotate-key": lambda session, stack, args: rotate_key(session, stack),
    "archive-lifecycle": lambda session, stack, args: archive_lifecycle(
        session, stack, args.expire_days, args.glacier_days
    ),
    "delete-stack": lambda session, stack, args: delete_stack(session, stack, confirmed=args.yes, timeout=args.timeout),
}


def run(args: argparse.Namespace, session: Any) -> None:
    stack = read_stack(session.client("cloudformation"), args.stack)
    task = _TASKS.get(args.task)
    if task is not None:
        task(session, stack, args)


def main(argv: list[str] | None = None, session: Any = None) -> int:
    args = parser().parse_args(argv)
    deploy = _deploy_py()
    try:
        run(args, session or boto3.session.Session(profile_name=args.profile, region_name=args.region))
    except OpsError as exc:
        print(str(exc), file=sys.stderr)
        return exc.code
    except (deploy.JobStopFailed, deploy.JobStopTimedOut) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in deploy.ACCESS_CODES:
            print(deploy._access_message(args.stack, exc), file=sys.stderr)
            return 3
        print(f"stack {args.stack}: {exc}", file=sys.stderr)
        return 1
    except BotoCoreError as exc:
        print(deploy._access_message(args.stack, exc), file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
