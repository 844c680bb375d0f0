"""A deployed stack's settings, read back from AWS: `--stack NAME` instead of typing buckets and tables by hand.

CloudFormation names the stack's Glue job (DescribeStackResource of `StreamingJob`); the job's DefaultArguments are
the flags the Glue entry passes to the same settings parser (streaming/cli/settings.py), and its `--extra-files`
is the settings file it runs with. So a command given `--stack` reads the tables, ledger and source the job uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from streaming.adapters import aws
from streaming.config import ConfigError

JOB_RESOURCE = "StreamingJob"  # the Glue job's logical id in deploy/template.json
# Glue job arguments that are settings flags (cli_settings.SETTING_FLAGS), by argument name.
ARGUMENT_SETTINGS = {
    "--source": "source",
    "--source-archive": "source_archive",
    "--warehouse": "warehouse",
    "--checkpoint": "checkpoint",
    "--ledger-backend": "ledger.backend",
    "--ledger-table": "ledger.table",
    "--ledger-path": "ledger.path",
}


class StackError(ConfigError):
    """The stack, its job or its settings could not be read; the message names which and why."""


@dataclass(frozen=True)
class StackSettings:
    """What a deployed stack's job runs with: settings overrides (dotted keys) and its settings file."""

    stack: str
    job: str
    region: str
    overrides: Mapping[str, str]
    settings_uri: str  # the job's --extra-files (its glue.toml), empty when it has none


def overrides(arguments: Mapping[str, str], region: str) -> dict[str, str]:
    """The job's arguments as settings: its paths, ledger and database, in the stack's region.

    The stack registers the tables in the Glue Data Catalog and keeps the ledger in DynamoDB, both in its region,
    so those are part of what it says, whatever a local settings file holds.
    """
    found = {ARGUMENT_SETTINGS[name]: value for name, value in arguments.items() if name in ARGUMENT_SETTINGS}
    if "--set" in arguments:  # Glue keeps one value per argument name, so one KEY=VALUE (as --set parses it)
        key, sep, value = arguments["--set"].partition("=")
        if not sep:
            raise StackError(f"the job's --set is not KEY=VALUE: {arguments['--set']!r}")
        found[key.strip()] = value
    found |= {"catalog.backend": "glue"}
    if region:
        found |= {"ledger.region": region, "catalog.region": region, "metrics.region": region}
    return found


def _why(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code')}: {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def load(stack: str, *, region: str = "", cfn: Any = None, glue: Any = None) -> StackSettings:
    """Read the stack's Glue job and its arguments (clients may be given; default: the environment's)."""
    cfn = cfn or aws.client("cloudformation", region)
    glue = glue or aws.client("glue", region)
    try:
        detail = cfn.describe_stack_resource(StackName=stack, LogicalResourceId=JOB_RESOURCE)["StackResourceDetail"]
    except (ClientError, BotoCoreError) as exc:
        raise StackError(f"stack {stack}: its Glue job cannot be read ({_why(exc)})") from exc
    job = detail["PhysicalResourceId"]
    try:
        arguments = glue.get_job(JobName=job)["Job"].get("DefaultArguments", {})
    except (ClientError, BotoCoreError) as exc:
        raise StackError(f"stack {stack}: Glue job {job} cannot be read ({_why(exc)})") from exc
    where = region or cfn.meta.region_name or ""
    return StackSettings(stack, job, where, overrides(arguments, where), arguments.get("--extra-files", ""))


def settings_file(found: StackSettings, folder: Path, *, s3: Any = None) -> Path | None:
    """Download the job's settings file into `folder`; None when the job has none."""
    if not found.settings_uri:
        return None
    bucket, _, key = found.settings_uri.removeprefix("s3://").partition("/")
    path = folder / key.rsplit("/", 1)[-1]
    try:
        (s3 or aws.client("s3", found.region)).download_file(bucket, key, str(path))
    except (ClientError, BotoCoreError) as exc:
        raise StackError(
            f"stack {found.stack}: its settings file {found.settings_uri} cannot be read ({_why(exc)}); "
            "pass --config FILE to use another"
        ) from exc
    return path
