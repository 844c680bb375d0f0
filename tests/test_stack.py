"""`--stack NAME`: a deployed stack's Glue job arguments and settings file become a command's settings (moto)."""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from streaming import cli
from streaming.config import ConfigError
from streaming.ops import stack

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.filterwarnings(f"ignore:Tried to parse AWS..{kind}:UserWarning")
    for kind in ("Glue", "Athena", "SNS..TopicPolicy", "CloudWatch..Alarm")
]


def _deploy_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_script", ROOT / "deploy" / "deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def deployed(aws_env: str, s3_bucket: str, tmp_path: Path, cloudformation_like_aws: None) -> str:
    """A stack deployed by deploy.py (its Glue job made as CloudFormation would), with non-default paths."""
    wheel = tmp_path / "bronze_encounter-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("streaming/__init__.py", "")
    name = f"st-{s3_bucket}"[:120]
    argv = ["--stack", name, "--landing-bucket", "landing-b", "--lakehouse-bucket", "lake-b"]
    argv += ["--artifacts-bucket", s3_bucket, "--ledger-table", f"{s3_bucket}-ledger", "--warehouse-prefix", "lake/"]
    argv += ["--param", "DatabaseName=lake_bronze", "--wheel", str(wheel), "--yes", "--no-restart"]
    assert _deploy_module().main(argv) == 0
    return name


@pytest.mark.slow  # deploys a stack to moto
def test_a_stacks_job_arguments_become_the_settings_it_runs_with(deployed: str, s3_bucket: str, tmp_path: Path) -> None:
    found = stack.load(deployed)
    assert (found.stack, found.job, found.region) == (deployed, deployed, "us-east-1")
    assert dict(found.overrides) == {
        "source": "s3://landing-b/fhir/encounter/",
        "source_archive": "s3://landing-b/fhir/archive/",
        "warehouse": "s3://lake-b/lake/",
        "checkpoint": f"s3://lake-b/_checkpoints/{deployed}/lake/bronze_encounter/",
        "ledger.backend": "dynamodb",
        "ledger.table": f"{s3_bucket}-ledger",
        "tables.database": "lake_bronze",
        "catalog.backend": "glue",
        "ledger.region": "us-east-1",
        "catalog.region": "us-east-1",
        "metrics.region": "us-east-1",
    }
    # Its settings file is the glue.toml the job was deployed with.
    path = stack.settings_file(found, tmp_path)
    assert path is not None and path.read_bytes() == (ROOT / "checkpoints_conf" / "glue.toml").read_bytes()


@pytest.mark.slow  # deploys a stack to moto
def test_commands_given_the_stack_read_the_jobs_settings_and_flags_still_win(deployed: str, s3_bucket: str) -> None:
    def settings(*argv: str) -> Any:
        return cli.load_config(cli.parser().parse_args(["status", "--stack", deployed, *argv]))

    config = settings()
    assert (config.source, config.warehouse, config.checkpoint_uri) == (
        "s3://landing-b/fhir/encounter/",
        "s3://lake-b/lake/",
        f"s3://lake-b/_checkpoints/{deployed}/lake/bronze_encounter/",
    )
    assert (config.ledger.backend, config.ledger.table, config.tables.database) == (
        "dynamodb",
        f"{s3_bucket}-ledger",
        "lake_bronze",
    )
    assert (config.catalog.backend, config.metrics.backend) == ("glue", "cloudwatch")  # the deployed glue.toml's
    assert config.trigger_interval == "60 seconds" and config.lease_ttl_seconds == 120  # ...with its values
    # A flag or --set still wins over the stack.
    config = settings("--warehouse", "s3://other/wh/", "--set", "tables.database=scratch")
    assert (config.warehouse, config.tables.database, config.source) == (
        "s3://other/wh/",
        "scratch",
        "s3://landing-b/fhir/encounter/",
    )


def test_a_stack_that_cannot_be_read_is_one_line_and_exit_2(aws_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError) as missing:
        stack.load("no-such-stack")
    assert str(missing.value) == (
        "stack no-such-stack: its Glue job cannot be read (ValidationError: Stack with id no-such-stack does not exist)"
    )
    assert cli.main(["status", "--stack", "no-such-stack"]) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith(
        "its Glue job cannot be read (ValidationError: Stack with id no-such-stack does not exist)"
    )
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_arguments_map_onto_the_settings_flags_of_the_same_name() -> None:
    """Each job argument stack.py reads is a settings flag the Glue entry parses into the same key."""
    from streaming.cli import settings as cli_settings

    parser = cli_settings.settings_parent()
    for argument, key in stack.ARGUMENT_SETTINGS.items():
        value = "dynamodb" if key == "ledger.backend" else "x"  # a choice
        parsed = parser.parse_args([argument, value])
        assert getattr(parsed, key) == value, argument
        assert key in cli_settings.SETTING_FLAGS
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        stack.overrides({"--set": "tables.database"}, "")
