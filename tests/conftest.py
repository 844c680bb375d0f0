"""Shared fixtures: one local Spark session per test run, AWS stand-ins from aws_fixtures; the `slow` mark guard."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streaming.config import SparkConfig

pytest_plugins = ["aws_fixtures"]

# The shared Synthea samples sit beside the repo (../shared); BRONZE_FHIR_SAMPLES points elsewhere.
_CANDIDATES = [
    os.environ.get("BRONZE_FHIR_SAMPLES", ""),
    str(Path(__file__).resolve().parents[2] / "shared" / "fhir-samples" / "synthea"),
    "/work/shared/fhir-samples/synthea",
]


@pytest.fixture(scope="session")
def samples() -> Path:
    """The shared Synthea R4 samples (read in place, never copied into the repo)."""
    for candidate in filter(None, _CANDIDATES):
        if (Path(candidate) / "encounters.ndjson").exists():
            return Path(candidate)
    pytest.fail(f"shared FHIR samples not found in {[c for c in _CANDIDATES if c]}; set BRONZE_FHIR_SAMPLES")


@pytest.fixture(scope="session")
def spark(local_aws: str) -> Iterator[object]:
    """A session-scoped local[2] Spark with Hudi: starting the JVM once keeps the suite minutes, not hours.

    It starts after `local_aws`, so s3a and the executors' boto3 reach the moto server.
    """
    from streaming.lakehouse.session import build_spark

    session = build_spark(SparkConfig(master="local[2]", shuffle_partitions=2, log_level="ERROR"))
    yield session
    session.stop()


# -- the `slow` mark cannot rot: a test not marked slow that starts a JVM fails ----------------------------------
#
# Statically, a test whose fixtures (direct or indirect) include `spark` fails before any fixture is set up.
# At run time, JAVA_HOME points at a stand-in `java` that records the attempt and exits 1, so a Spark session started
# in this process or in a child (the job's CLI, a subprocess) is caught; a session already running in this process
# is refused at `SparkSession.builder.getOrCreate()`.

_JVM_GUARD = pytest.StashKey[tuple[pytest.MonkeyPatch, Path]]()
_NOT_SLOW = "{} starts a JVM ({}) but is not marked slow: add pytest.mark.slow (see pyproject.toml's markers)"


def _no_jvm_home(config: pytest.Config) -> Path:
    """A JAVA_HOME whose `java` records that it was started (in $BRONZE_TEST_JVM_STARTED) and fails."""
    home = getattr(config, "_bronze_no_jvm_home", None)
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="bronze-no-jvm-"))
        java = home / "bin" / "java"
        java.parent.mkdir()
        java.write_text(
            '#!/bin/sh\n: > "$BRONZE_TEST_JVM_STARTED"\necho "a test not marked slow started a JVM" >&2\nexit 1\n'
        )
        java.chmod(0o755)
        config._bronze_no_jvm_home = home  # type: ignore[attr-defined]
    return home


def _refuse_spark(*_: Any, **__: Any) -> Any:
    raise RuntimeError("a test not marked slow asked for a Spark session: add pytest.mark.slow")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("slow"):
        return
    if "spark" in getattr(item, "fixturenames", ()):
        pytest.fail(_NOT_SLOW.format(item.nodeid, "it uses the `spark` fixture"), pytrace=False)
    home = _no_jvm_home(item.config)
    started = home / f"{uuid.uuid4().hex}.started"
    mp = pytest.MonkeyPatch()
    mp.setenv("JAVA_HOME", str(home))
    mp.setenv("BRONZE_TEST_JVM_STARTED", str(started))
    if "pyspark.sql" in sys.modules:  # a JVM may already run here (a slow test before): refuse to hand it out
        mp.setattr(sys.modules["pyspark.sql"].SparkSession.Builder, "getOrCreate", _refuse_spark)
    item.stash[_JVM_GUARD] = (mp, started)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    guard = item.stash.get(_JVM_GUARD, None)
    if guard is None:
        return
    mp, started = guard
    mp.undo()
    del item.stash[_JVM_GUARD]
    if started.exists():
        started.unlink()
        pytest.fail(_NOT_SLOW.format(item.nodeid, "`java` was run"), pytrace=False)


def pytest_unconfigure(config: pytest.Config) -> None:
    home = getattr(config, "_bronze_no_jvm_home", None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)
