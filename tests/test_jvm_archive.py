"""The job processes tests start load their classes from tests/jvm.py's archive (a silent fallback would hide it)."""

from __future__ import annotations

import os
from pathlib import Path

import jvm
import pytest

from streaming import generate


@pytest.mark.job
def test_a_job_process_loads_its_classes_from_the_archive(tmp_path: Path) -> None:
    generate.generate(tmp_path / "landing", files=1, per_file=5, seed=3)
    logs = tmp_path / "class-load"
    logs.mkdir()
    # Each JVM logs where every class came from: the launcher's and the job's, one file per process.
    env = dict(os.environ, JDK_JAVA_OPTIONS=f"-Xlog:class+load=info:file={logs}/%p.log")
    done = jvm.run_job(tmp_path, env)
    assert done.returncode == 0, done.stderr[-2000:]
    job_log = max(logs.glob("*.log"), key=lambda p: p.stat().st_size)  # the job's JVM loads far more than the launcher
    lines = [line for line in job_log.read_text().splitlines() if "source:" in line]
    from_archive = [line for line in lines if "shared objects file (top)" in line]
    assert len(lines) > 5000
    assert len(from_archive) > 0.6 * len(lines), f"{len(from_archive)} of {len(lines)} classes from the archive"
