"""The settings flags every table command shares, and how they become a `JobConfig` (flag > settings file > default).

One definition for `run`, `query`, `status`, `reingest`, `replay-quarantine` and the Glue entry (which parses Glue's
job arguments with the same flags), so a setting means the same thing everywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from streaming import config as conf

# Flags that map onto a dotted settings key; anything else goes through --set.
SETTING_FLAGS = (
    "source",
    "source_archive",
    "warehouse",
    "checkpoint",
    "trigger_interval",
    "max_files_per_trigger",
    "ledger.backend",
    "ledger.table",
    "ledger.path",
    "views.run",
)


def settings_parent() -> argparse.ArgumentParser:
    """Settings flags shared by every command that reads or writes the tables: same names, same precedence."""
    parent = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    group = parent.add_argument_group("settings (flag > settings file > default)")
    group.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="settings file (TOML) to read instead of checkpoints_conf/<env>.toml; keys are documented in "
        "streaming/config.py (default: none, use --env). e.g. --config prod.toml",
    )
    group.add_argument(
        "--env",
        default="local",
        help="named settings file checkpoints_conf/<ENV>.toml, used when --config is not given "
        "(default: %(default)s). e.g. --env glue",
    )
    group.add_argument(
        "--stack",
        metavar="NAME",
        help="a deployed stack (deploy/deploy.py): its Glue job's arguments and settings file stand in for the "
        "settings file, so no bucket or table is typed by hand; flags still win (default: none). "
        "e.g. --stack bronze-encounter",
    )
    group.add_argument(
        "--source",
        metavar="URI",
        help="landing prefix the files arrive in: a folder or s3a://bucket/prefix (default: the settings file's "
        "`source`). e.g. --source s3a://landing/fhir/encounter/",
    )
    group.add_argument(
        "--source-archive",
        dest="source_archive",
        metavar="URI",
        help="move each ingested file here (under its full path) once its batch is committed, so the source lists "
        "only files not yet ingested: same file system (bucket) as --source, outside it (default: the settings "
        "file's `source_archive`; empty: files stay). e.g. --source-archive s3a://landing/fhir/archive/",
    )
    group.add_argument(
        "--warehouse",
        metavar="URI",
        help="root of the Hudi tables, each at <warehouse>/<table> (default: the settings file's `warehouse`). "
        "e.g. --warehouse data/warehouse",
    )
    group.add_argument(
        "--checkpoint",
        metavar="URI",
        help="Spark checkpoint of the stream; keep it on a store with atomic rename "
        "(default: <warehouse>/_checkpoints/bronze_encounter). e.g. --checkpoint /var/lib/bronze/checkpoint",
    )
    group.add_argument(
        "--ledger-backend",
        dest="ledger.backend",
        choices=["sqlite", "dynamodb"],
        help="where the file ledger lives: sqlite on local disk or a DynamoDB table (default: the settings file's "
        "ledger.backend, sqlite locally)",
    )
    group.add_argument(
        "--ledger-table",
        dest="ledger.table",
        metavar="NAME",
        help="DynamoDB table of the ledger, for --ledger-backend dynamodb (default: bronze_encounter_ledger). "
        "e.g. --ledger-table prod_bronze_ledger",
    )
    group.add_argument(
        "--ledger-path",
        dest="ledger.path",
        metavar="FILE",
        help="SQLite file of the ledger, for --ledger-backend sqlite (default: "
        "<warehouse>/_ledger/ledger.sqlite3). e.g. --ledger-path /var/lib/bronze/ledger.sqlite3",
    )
    group.add_argument(
        "--views",
        dest="views.run",
        metavar="LIST",
        help="the views to run, comma-separated: shipped views by name or ViewDefinition JSON files; each but "
        "encounter lands in its own table bronze_<view name> (default: the settings file's views.run, encounter). "
        "e.g. --views encounter,patient,views/condition.json",
    )
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other setting by its dotted key, repeatable (default: none). "
        "e.g. --set fhir.max_depth=32 --set metrics.backend=cloudwatch",
    )
    return parent


def load_config(args: argparse.Namespace) -> conf.JobConfig:
    """Settings of a command: flags > --stack's job arguments > --config file (else --stack's settings file, else
    checkpoints_conf/<env>.toml) > defaults."""
    if getattr(args, "stack", None):
        from streaming.ops import stack  # reads AWS: only when asked to

        with tempfile.TemporaryDirectory() as folder:
            found = stack.load(args.stack)
            return _load(args, args.config or stack.settings_file(found, Path(folder)), found.overrides)
    file = args.config
    if file is None:
        file = conf.env_file(args.env)
        if not file.exists():
            known = ", ".join(sorted(p.stem for p in conf.CONF_DIR.glob("*.toml")))
            raise conf.ConfigError(f"--env {args.env}: there is no {file} (environments: {known}); or pass --config")
    return _load(args, file, {})


def _load(args: argparse.Namespace, file: Path | None, deployed: dict[str, str] | Any) -> conf.JobConfig:
    flags: dict[str, Any] = {key: getattr(args, key, None) for key in SETTING_FLAGS}
    given = {key: value for key, value in flags.items() if value is not None}  # a flag not given keeps --stack's
    config = conf.load(file, {**deployed, **given, **parse_set(args.set)})
    return verbose(config) if getattr(args, "verbose", False) else config


def parse_set(items: list[str]) -> dict[str, str]:
    """`--set KEY=VALUE` flags as dotted settings keys (a later one wins)."""
    settings: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise conf.ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        settings[key.strip()] = value
    return settings


# Spark log levels from the quietest; --verbose lowers a quieter one to WARN, a louder one (INFO, DEBUG) stays.
_QUIET_LEVELS = ("OFF", "FATAL", "ERROR")


def verbose(config: conf.JobConfig) -> conf.JobConfig:
    """The same settings with the JVM's warnings and start-up lines shown (--verbose)."""
    level = "WARN" if config.spark.log_level.upper() in _QUIET_LEVELS else config.spark.log_level
    return dataclasses.replace(config, spark=dataclasses.replace(config.spark, quiet=False, log_level=level))
