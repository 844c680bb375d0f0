"""The JVM options the suite gives the JVMs it starts: a class-data archive of the job's classes; C1 only for job runs.

A job process spends most of a small run loading and compiling Spark's and Hudi's classes: 20 rows took 23 s and
40 CPU-seconds on 2 cores, of which the rows are a fraction. A class-data-sharing (AppCDS) archive of the classes one
job run loads, built once per venv and jar set, and the client compiler alone (test runs are too short for C2 to
pay back) cut that to 16 s and 20 CPU-seconds; docs/decisions/test-jvm-options.md has the figures. The job is the
same code either way; production and `make bench`'s full runs keep the JVM's defaults.

The archive is built by one real job run (two batches: a first write and an upsert) whose JVM dumps its classes when
it exits. A JVM whose class path differs (the benchmark peers with Delta or Iceberg) or a stale archive is silently
ignored by the JVM (its CDS log is off) and runs as before; a failed build only warns.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from streaming import generate
from streaming.lakehouse import jars

REPO = Path(__file__).resolve().parents[1]
C1_ONLY = "-XX:TieredStopAtLevel=1"
CDS_QUIET = "-Xlog:cds=off,cds+dynamic=off"  # a stale or mismatched archive is ignored without a word on stdout


def real_java(java_home: str | None) -> str:
    return shutil.which("java", path=str(Path(java_home) / "bin") if java_home else None) or "java"


def _key(java: str) -> str:
    """What the archive depends on: the JVM binary and every jar the job's class path holds, by path."""
    import pyspark

    parts = [os.path.realpath(java), str(Path(os.path.realpath(java)).stat().st_mtime_ns), pyspark.__file__]
    parts += [f"{p}:{p.stat().st_size}" for p in jars.local_jars()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def archive_path(java: str) -> Path:
    """In the venv: the JVM checks the class path by path, and pyspark's jars are the venv's (`make clean` drops it)."""
    return Path(sys.prefix) / "bronze-test-jvm" / f"job-{_key(java)}.jsa"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time (pytest-xdist workers share the venv)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _dumping_java_home(scratch: Path, java: str, dump: Path, pid_file: Path) -> Path:
    """A JAVA_HOME whose `java` dumps its loaded classes at exit, except Spark's launcher (a JVM of its own)."""
    home = scratch / "java-home"
    (home / "bin").mkdir(parents=True)
    script = home / "bin" / "java"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *org.apache.spark.launcher.Main*) exec "{java}" "$@";; esac\n'
        f'echo $$ > "{pid_file}"\n'
        f'exec "{java}" {C1_ONLY} -XX:ArchiveClassesAtExit="{dump}" "$@"\n'
    )
    script.chmod(0o755)
    return home


def run_job(scratch: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`run --once` of the job's CLI over `scratch`/landing into `scratch`/warehouse."""
    command = [sys.executable, "-m", "streaming.cli", "run", "--once", "--source", str(scratch / "landing")]
    return subprocess.run(
        [*command, "--warehouse", str(scratch / "warehouse"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _build(java: str, target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="bronze-cds-") as tmp:
        scratch = Path(tmp)
        generate.generate(scratch / "landing", files=2, per_file=20, seed=7)
        dump, pid_file = scratch / "job.jsa", scratch / "jvm.pid"
        env = dict(os.environ, JAVA_HOME=str(_dumping_java_home(scratch, java, dump, pid_file)))
        env.pop("BRONZE_TEST_JVM_STARTED", None)
        done = run_job(scratch, env, "--set", "max_files_per_trigger=1")
        if done.returncode != 0 or not pid_file.exists():
            why = f"the warm-up job exited {done.returncode}: {done.stderr[-500:]}"
            warnings.warn(f"no JVM class archive ({why})", stacklevel=2)
            return
        pid = int(pid_file.read_text())
        deadline = time.monotonic() + 120
        while _alive(pid) and time.monotonic() < deadline:  # it writes the archive as it exits
            time.sleep(0.2)
        if dump.exists() and not _alive(pid):
            os.replace(dump, target)
        else:
            warnings.warn("no JVM class archive: the warm-up job's JVM did not write one", stacklevel=2)


def options(java: str, *, long_lived: bool = False) -> str:
    """The options for a JVM a test starts; builds the archive on first use (about 30 s, once per venv and jar set).

    The session's own JVM (`long_lived`) serves every Spark test for the whole run: it keeps C2, which pays back
    there (C1 alone made those tests up to 2x slower), and takes the archive only.
    """
    if os.environ.get("BRONZE_TEST_JVM_DEFAULTS"):
        return ""
    target = archive_path(java)
    if not target.exists():
        with _locked(target):
            if not target.exists():
                _build(java, target)
    archive = f"-XX:SharedArchiveFile={target} {CDS_QUIET}" if target.exists() else ""
    return f"{'' if long_lived else C1_ONLY} {archive}".strip()
