"""A checkpoint serves one table: pointed at another warehouse, the job refuses to start instead of skipping files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import job_config, read_table

from streaming import cli
from streaming.generate import generate
from streaming.lakehouse.checkpoint import STAMP
from streaming.pipeline import job

pytestmark = pytest.mark.spark


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


def test_a_checkpoint_is_refused_for_another_table_and_kept_for_its_own(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landing, checkpoint = tmp_path / "landing", tmp_path / "checkpoint"
    generated = generate(landing, files=2, per_file=5, seed=81)
    first = job_config(tmp_path / "a", landing, checkpoint=str(checkpoint))
    job.run(first, once=True, spark=spark)
    assert (checkpoint / STAMP).read_text() == f"file:{tmp_path / 'a' / 'warehouse' / 'bronze_encounter'}"

    # The same checkpoint for a rebuilt warehouse: every landed file would be skipped by the seen-files map.
    rebuilt = tmp_path / "b" / "warehouse"
    argv = ["run", "--once", "--source", str(landing), "--warehouse", str(rebuilt), "--checkpoint", str(checkpoint)]
    code, err = _run(argv, capsys)
    assert code == cli.EXIT_CONFIG
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"belongs to table file:{tmp_path / 'a' / 'warehouse' / 'bronze_encounter'}" in err
    assert f"not file:{rebuilt / 'bronze_encounter'}" in err
    assert not (rebuilt / "bronze_encounter").exists()  # nothing written anywhere

    # Its own table takes it again, and a new checkpoint for the new warehouse ingests every file.
    generate(landing / "more", files=1, per_file=5, seed=82)
    assert job.run(first, once=True, spark=spark).files == 1
    argv[-1] = str(tmp_path / "b" / "checkpoint")
    assert _run(argv, capsys)[0] == 0
    rows = read_table(spark, str(rebuilt / "bronze_encounter"))
    assert len(rows) == len(generated.encounter_ids) + 5


def test_an_unstamped_checkpoint_is_adopted_only_by_a_table_with_data(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checkpoints written before the stamp existed: committed batches next to an empty table served another."""
    landing, checkpoint = tmp_path / "landing", tmp_path / "checkpoint"
    generate(landing, files=1, per_file=3, seed=83)
    old = job_config(tmp_path / "a", landing, checkpoint=str(checkpoint))
    job.run(old, once=True, spark=spark)
    (checkpoint / STAMP).unlink()

    argv = [
        "run",
        "--once",
        "--source",
        str(landing),
        "--warehouse",
        str(tmp_path / "b"),
        "--checkpoint",
        str(checkpoint),
    ]
    code, err = _run(argv, capsys)
    assert code == cli.EXIT_CONFIG and err.count("\n") == 1
    assert (
        f"checkpoint {checkpoint} has 1 committed batches but table file:{tmp_path / 'b' / 'bronze_encounter'}" in err
    )
    assert not (checkpoint / STAMP).exists()

    job.run(old, once=True, spark=spark)  # its own table has commits: adopted and stamped
    assert (checkpoint / STAMP).read_text() == f"file:{tmp_path / 'a' / 'warehouse' / 'bronze_encounter'}"

    # A lost checkpoint is a new one: stamped at the next start, nothing refused.
    shutil.rmtree(checkpoint)
    assert job.run(old, once=True, spark=spark).files == 0
    assert (checkpoint / STAMP).exists()
