"""A file whose parsing kills the worker process (the OS's out-of-memory killer) cannot stop the stream.

The kill is real: a `sitecustomize` module on the job's PYTHONPATH makes every Python process that opens the
poison file SIGKILL itself, as the OOM killer would kill a worker holding a huge document. Only the Spark
workers open landing files, so the driver is never hit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from harness import Job
from helpers import job_config, read_table

from streaming.bronze.records import WORKER_DIED
from streaming.fhir.reasons import RECORD_TOO_LARGE
from streaming.ledger import open_ledger

pytestmark = pytest.mark.job  # the job runs in its own process (a worker dies there)

POISON_NAME = "poison-kills-worker"  # kills every worker that opens it
PAIR = ("pair-a", "pair-b")  # kill a task that opens both: files that only die together
FLAKY_NAME = "flaky-kills-once"  # kills the first worker that opens it, then parses
SITECUSTOMIZE = f"""
import builtins, os, signal

_open = builtins.open
_pair = {{}}  # task attempt -> which of the pair it opened
_flag = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flaky-died")


def _open_or_die(file, *args, **kwargs):
    name = str(file)
    if {POISON_NAME!r} in name:
        os.kill(os.getpid(), signal.SIGKILL)
    if {FLAKY_NAME!r} in name:
        try:
            os.close(os.open(_flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    for member in {PAIR!r}:
        if member in name:
            from pyspark import TaskContext

            context = TaskContext.get()
            opened = _pair.setdefault(context.taskAttemptId() if context else None, set())
            opened.add(member)
            if len(opened) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
    return _open(file, *args, **kwargs)


builtins.open = _open_or_die
"""


def _encounters(prefix: str, n: int) -> str:
    rows = [
        {"resourceType": "Encounter", "id": f"{prefix}-{i}", "status": "finished", "serviceProvider": {"display": "H"}}
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows)


def _folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Landing, warehouse, and the folder whose sitecustomize.py the job's processes load."""
    landing, warehouse, hooks = tmp_path / "landing", tmp_path / "warehouse", tmp_path / "hooks"
    for folder in (landing, hooks):
        folder.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return landing, warehouse, hooks


def test_a_file_that_kills_its_worker_is_quarantined_and_the_rest_lands(spark: Any, tmp_path: Path) -> None:
    landing, warehouse, hooks = _folders(tmp_path)
    (landing / "good-a.ndjson").write_text(_encounters("a", 3))
    (landing / f"{POISON_NAME}.ndjson").write_text(_encounters("p", 2))
    (landing / "good-b.ndjson").write_text(_encounters("b", 2))

    with Job(tmp_path, landing, warehouse, env={"PYTHONPATH": str(hooks)}) as job:
        proc = job.run("poison", once=True)
        assert proc.returncode == 0, proc.tail()

    config = job_config(tmp_path, landing)
    bronze = {r["encounter_id"] for r in read_table(spark, config.table_uri(config.tables.encounter))}
    assert bronze == {"a-0", "a-1", "a-2", "b-0", "b-1"}
    quarantine = read_table(spark, config.table_uri(config.tables.quarantine))
    assert [(Path(r["sourcename"]).name, r["source_position"], r["reason"], r["message"]) for r in quarantine] == [
        (f"{POISON_NAME}.ndjson", "file", RECORD_TOO_LARGE, WORKER_DIED)
    ]
    ledger = open_ledger(config)
    try:
        names = ["good-a.ndjson", f"{POISON_NAME}.ndjson", "good-b.ndjson"]
        uris = [f"file:{landing / n}" for n in names]
        assert ledger.committed(uris) == set(uris)  # the poison file is done with: committed, quarantined
    finally:
        ledger.close()


def _lands_whole(spark: Any, tmp_path: Path, files: dict[str, int]) -> None:
    """Run the job once over `files` (name -> encounters); every encounter lands, nothing is quarantined."""
    landing, warehouse, hooks = _folders(tmp_path)
    for name, count in files.items():
        (landing / f"{name}.ndjson").write_text(_encounters(name, count))
    with Job(tmp_path, landing, warehouse, env={"PYTHONPATH": str(hooks)}) as job:
        proc = job.run("apart", once=True)
        assert proc.returncode == 0, proc.tail()
        assert [line["files"] for line in proc.batch_lines()] == [len(files)]  # one batch, one commit
    config = job_config(tmp_path, landing)
    bronze = {r["encounter_id"] for r in read_table(spark, config.table_uri(config.tables.encounter))}
    assert bronze == {f"{name}-{i}" for name, count in files.items() for i in range(count)}
    assert not (Path(config.table_uri(config.tables.quarantine)) / ".hoodie").exists()  # nothing quarantined
    ledger = open_ledger(config)
    try:
        uris = [f"file:{landing / name}.ndjson" for name in files]
        assert ledger.committed(uris) == set(uris)
    finally:
        ledger.close()


def test_files_that_kill_a_worker_only_together_land_when_read_apart(spark: Any, tmp_path: Path) -> None:
    # Read largest first, dealt round-robin over the 2 cores: the pair shares a task, the other file has its own.
    _lands_whole(spark, tmp_path, {"pair-a": 6, "other": 4, "pair-b": 2})


def test_a_file_whose_worker_died_once_for_another_reason_lands(spark: Any, tmp_path: Path) -> None:
    """A worker death that does not repeat quarantines nothing: the file parses when read again."""
    _lands_whole(spark, tmp_path, {"good-a": 3, FLAKY_NAME: 2, "good-b": 2})
