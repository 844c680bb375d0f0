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

from streaming.ledger import open_ledger
from streaming.reasons import RECORD_TOO_LARGE
from streaming.records import WORKER_DIED

pytestmark = pytest.mark.slow

POISON_NAME = "poison-kills-worker"
SITECUSTOMIZE = f"""
import builtins, os, signal

_open = builtins.open


def _open_or_die(file, *args, **kwargs):
    if {POISON_NAME!r} in str(file):
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


def test_a_file_that_kills_its_worker_is_quarantined_and_the_rest_lands(spark: Any, tmp_path: Path) -> None:
    landing, warehouse, hooks = tmp_path / "landing", tmp_path / "warehouse", tmp_path / "hooks"
    for folder in (landing, hooks):
        folder.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
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
