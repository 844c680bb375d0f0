"""Shared fixtures: one local Spark session per test run, AWS stand-ins from aws_fixtures; the cost-mark guard."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jvm
import pytest

from benchmarks import shared_data
from streaming.config import SparkConfig

pytest_plugins = ["aws_fixtures"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once, in one line, when the shared samples or the SQL on FHIR suite are not where tests look."""
    for folder in (shared_data.SYNTHEA, shared_data.BULK, shared_data.SOF_SUITE):
        if not folder.exists():
            pytest.exit(shared_data.missing(folder), returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def samples() -> Path:
    """The shared Synthea R4 samples (read in place, never copied into the repo)."""
    return shared_data.SYNTHEA


@pytest.fixture(scope="session")
def spark(local_aws: str, request: pytest.FixtureRequest) -> Iterator[object]:
    """A session-scoped local[2] Spark with Hudi: starting the JVM once keeps the suite minutes, not hours.

    It starts after `local_aws`, so s3a and the executors' boto3 reach the moto server, and with a JAVA_HOME that
    the cost guard below does not count, so it counts only JVMs a test starts in another process.
    """
    from streaming.lakehouse.session import build_spark

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAVA_HOME", str(_java_home(request.config, "session")))
        session = build_spark(SparkConfig(master="local[2]", shuffle_partitions=2, log_level="ERROR"))
    yield session
    session.stop()


# -- cost marks that cannot rot ----------------------------------------------------------------------------------
#
# Three costs, each a mark (pyproject.toml's markers): none (pure Python, moto, DuckDB), `spark` (the session's
# in-process Spark), `job` (a JVM in another process: the job's CLI, the fault harness, the benchmarks). `spark` and
# `job` tests are `slow` too, so `-m "not slow"` is the fast tier. Checked on every run:
#   - a test not marked `spark` or `job` that asks for the `spark` fixture fails before any fixture is set up, and one
#     that runs `java` (JAVA_HOME points at a stand-in that records the attempt and exits 1) fails after it;
#   - a `spark` test that runs `java` in another process, or that never asks for the `spark` fixture, fails;
#   - a `job` test that never runs `java` fails (JAVA_HOME points at a stand-in that records it and runs the real one).
# BRONZE_TEST_COST_REPORT=file writes each JVM test's finding there (a JSON line) instead of failing it.

_REAL_JAVA_HOME = os.environ.get("JAVA_HOME")
_GUARD = pytest.StashKey[tuple[pytest.MonkeyPatch, Path]]()
_REFUSE = '#!/bin/sh\n: > "$BRONZE_TEST_JVM_STARTED"\necho "a test not marked spark or job started a JVM" >&2\nexit 1\n'
_RECORD = '#!/bin/sh\n: > "$BRONZE_TEST_JVM_STARTED"\nexec "{java}" {options} "$@"\n'
_SESSION = '#!/bin/sh\nexec "{java}" {options} "$@"\n'  # the session's own JVM: not counted, its archive only
_UNGROUPED = (
    "{} was not grouped by --dist loadgroup (no @group in its id): its module's shared fixture would be set up on "
    "each worker. pytest 9.2 broke the grouping (pytest-xdist issue 1386): install the pytest pyproject.toml pins"
)
_WRONG = {
    "pure": "{} starts a JVM ({}) but is not marked spark or job: mark it (see pyproject.toml's markers)",
    "spark": "{} is marked spark but {}: mark it job (a JVM in another process) or drop the mark",
    "job": "{} is marked job but {}: mark it spark (the in-process session) or drop the mark",
}


def _cost(item: pytest.Item) -> str:
    """The mark a test declares: `job` beats `spark` (a job test may use the session too); none is `pure`."""
    return next((mark for mark in ("job", "spark") if item.get_closest_marker(mark)), "pure")


_RANK = {"job": 0, "spark": 1, "pure": 2}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every JVM test `slow`; orders the tests costliest first; keeps a module's shared fixture on one worker.

    `make test` runs `--dist loadgroup`: tests go to whichever worker is free, in this order (job tests, then Spark
    tests, then pure ones, those talking to moto first, so the cheap ones fill the end and neither worker waits
    long for the other), except that the tests using one of their module's module-scoped fixtures (a shared job
    run, say) form a group that runs on one worker, paying that fixture once instead of once per worker
    (docs/decisions/test-costs.md).
    """
    for item in items:
        if _cost(item) != "pure":
            item.add_marker(pytest.mark.slow)
        if _uses_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    items.sort(key=_order)  # stable: within a rank, the modules' own order


def _order(item: pytest.Item) -> tuple[int, bool]:
    """Costliest first: by cost mark, then a test on the local AWS (moto) before one that is not."""
    return _RANK[_cost(item)], "moto_endpoint" not in getattr(item, "fixturenames", ())


def _uses_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    definitions = info.name2fixturedefs.values() if info is not None else ()
    return any(d.scope == "module" for defs in definitions for d in defs)


def _java_home(config: pytest.Config, kind: str) -> Path:
    """A JAVA_HOME whose `java` touches $BRONZE_TEST_JVM_STARTED, then fails (`refuse`) or runs the real one
    (`record`), or only runs it (`session`); the real one gets tests/jvm.py's options."""
    homes: dict[str, Path] = config.__dict__.setdefault("_bronze_java_homes", {})
    if kind not in homes:
        real = jvm.real_java(_REAL_JAVA_HOME)
        home = Path(tempfile.mkdtemp(prefix=f"bronze-{kind}-jvm-"))
        java = home / "bin" / "java"
        java.parent.mkdir()
        script = {"refuse": _REFUSE, "record": _RECORD, "session": _SESSION}[kind]
        options = "" if kind == "refuse" else jvm.options(real, long_lived=kind == "session")
        java.write_text(script.format(java=real, options=options))
        java.chmod(0o755)
        homes[kind] = home
    return homes[kind]


def _refuse_spark(*_: Any, **__: Any) -> Any:
    raise RuntimeError("a test not marked spark or job asked for a Spark session: mark it (pyproject.toml)")


def _wrong(item: pytest.Item, cost: str, why: str, spark: bool, child: bool) -> None:
    report = os.environ.get("BRONZE_TEST_COST_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as out:
            out.write(json.dumps({"test": item.nodeid, "marked": cost, "spark": spark, "child_jvm": child}) + "\n")
        return
    pytest.fail(_WRONG[cost].format(item.nodeid, why), pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    grouped = getattr(item.config.option, "loadgroup", False) and item.get_closest_marker("xdist_group")
    if grouped and "@" not in item.nodeid:  # xdist reads the group from the nodeid's @suffix, not from the mark
        pytest.fail(_UNGROUPED.format(item.nodeid), pytrace=False)
    cost, spark = _cost(item), "spark" in getattr(item, "fixturenames", ())
    if cost == "pure" and spark:
        _wrong(item, cost, "it uses the `spark` fixture", spark, False)
    if cost == "spark" and not spark:
        _wrong(item, cost, "it never asks for the `spark` fixture", spark, False)
    refuse = cost == "pure" and not os.environ.get("BRONZE_TEST_COST_REPORT")
    home = _java_home(item.config, "refuse" if refuse else "record")
    started = home / f"{uuid.uuid4().hex}.started"
    mp = pytest.MonkeyPatch()
    mp.setenv("JAVA_HOME", str(home))
    mp.setenv("BRONZE_TEST_JVM_STARTED", str(started))
    if cost == "pure" and "pyspark.sql" in sys.modules:  # a JVM may already run here: refuse to hand it out
        mp.setattr(sys.modules["pyspark.sql"].SparkSession.Builder, "getOrCreate", _refuse_spark)
    item.stash[_GUARD] = (mp, started)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    guard = item.stash.get(_GUARD, None)
    if guard is None:
        return
    mp, started = guard
    mp.undo()
    del item.stash[_GUARD]
    child = started.exists()
    started.unlink(missing_ok=True)
    cost, spark = _cost(item), "spark" in getattr(item, "fixturenames", ())
    if cost == "pure" and child:
        _wrong(item, cost, "`java` was run", spark, child)
    elif cost == "spark" and child:
        _wrong(item, cost, "it runs `java` in another process", spark, child)
    elif cost == "job" and not child:
        _wrong(item, cost, "it never runs `java` in another process", spark, child)
    elif os.environ.get("BRONZE_TEST_COST_REPORT") and cost != "pure":
        _wrong(item, cost, "", spark, child)  # the report lists every JVM test, right or wrong


def pytest_unconfigure(config: pytest.Config) -> None:
    for home in config.__dict__.get("_bronze_java_homes", {}).values():
        shutil.rmtree(home, ignore_errors=True)
