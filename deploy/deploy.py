"""Deploy path: build the wheel, upload it with the Glue entry script and glue.toml, create or update the stack.

    python deploy/deploy.py --stack bronze-encounter --landing-bucket L --lakehouse-bucket H --artifacts-bucket A
    python deploy/deploy.py ... --dry-run   # print the change set (what would be added, modified, replaced) only

Every run prints the change set first; --job-command glueetl, --kms-key-arn and --alarm-email set the template's
JobCommand, KmsKeyArn and AlarmEmail parameters.

Uses the caller's AWS credentials (boto3's usual chain); AWS_ENDPOINT_URL points it at a stand-in (moto) in tests.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError, WaiterError

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "template.json"


def build_wheel(out_dir: Path) -> Path:
    """Build this project's wheel (no dependencies: Glue 5.1 provides Spark, boto3, pyarrow and pandas)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out_dir), str(ROOT)],
        check=True,
    )
    (wheel,) = out_dir.glob("bronze_encounter-*.whl")
    return wheel


def upload_artifacts(s3: Any, bucket: str, prefix: str, wheel: Path) -> dict[str, str]:
    """Upload what the Glue job runs; returns {artifact name: s3 key}."""
    artifacts = {
        wheel.name: wheel,
        "glue_entry.py": ROOT / "streaming" / "glue_entry.py",
        "glue.toml": ROOT / "checkpoints_conf" / "glue.toml",
    }
    keys = {}
    for name, path in artifacts.items():
        key = f"{prefix}{name}"
        s3.upload_file(str(path), bucket, key)
        keys[name] = key
    return keys


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="bronze-encounter")
    parser.add_argument("--landing-bucket", required=True)
    parser.add_argument("--lakehouse-bucket", required=True)
    parser.add_argument("--artifacts-bucket", required=True)
    parser.add_argument("--artifacts-prefix", default="bronze-encounter/")
    parser.add_argument("--region")
    parser.add_argument("--job-command", choices=["gluestreaming", "glueetl"], default="gluestreaming")
    parser.add_argument("--kms-key-arn", default="", help="an existing KMS key; default: the stack creates one")
    parser.add_argument("--alarm-email", default="", help="address subscribed to the alarm topic")
    parser.add_argument("--ledger-table", default="bronze_encounter_ledger")
    parser.add_argument("--dry-run", action="store_true", help="print the change set, change nothing")
    args = parser.parse_args(argv)

    session = boto3.session.Session(region_name=args.region)
    cfn = session.client("cloudformation")
    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_wheel(Path(tmp))
        parameters = {
            "JobName": args.stack,
            "JobCommand": args.job_command,
            "LandingBucket": args.landing_bucket,
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
        if args.dry_run:
            print(f"stack {args.stack}: dry run, {len(changes)} change(s), nothing deployed")
            return 0
        upload_artifacts(session.client("s3"), args.artifacts_bucket, args.artifacts_prefix, wheel)
    status = deploy_stack(cfn, args.stack, parameters)
    print(f"stack {args.stack}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
