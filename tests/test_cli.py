"""The CLI as a user runs it: a separate process, exit codes, and what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streaming.cli import main
from streaming.generate import generate

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "streaming.cli"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600, env=os.environ.copy())


def test_run_once_exits_zero_and_is_idempotent(tmp_path: Path) -> None:
    generated = generate(tmp_path / "landing", files=3, per_file=10, seed=3)
    args = ("run", "--source", str(tmp_path / "landing"), "--warehouse", str(tmp_path / "wh"), "--once")

    first = _run(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"{len(generated.files)} files, {len(generated.encounter_ids)} rows written, 0 rejected" in first.stdout

    second = _run(*args)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "0 files, 0 rows written" in second.stdout
    assert (tmp_path / "wh" / "_checkpoints" / "bronze_encounter").is_dir()
    assert (tmp_path / "wh" / "_ledger" / "ledger.sqlite3").is_file()


def test_config_errors_exit_2_with_the_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["run", "--source", str(tmp_path), "--warehouse", "s3a://wh-bucket/x", "--once"])
    assert code == 2
    assert "ledger.path must be set" in capsys.readouterr().err
    code = main(["run", "--set", "fhir.max_depth=deep", "--once"])
    assert code == 2
    assert "fhir.max_depth must be int" in capsys.readouterr().err
