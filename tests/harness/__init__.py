"""Fault-injection harness: run the real job as a separate process, kill it, restart it, check what it recorded.

- `processes`: `Job` starts the real CLI (`fault_job.py run ...`) for one landing folder and warehouse, each process in
  its own process group (the Python driver, its Spark JVM and the JVM's Python workers), with stdout/stderr in
  files. `JobProcess.kill()` SIGKILLs the whole group, as a lost machine would; a named kill point (`kill_at`)
  makes the driver SIGKILL itself (faults.py: the batch hook fault_job.py passes) and the harness then removes
  what is left of the group.
  `JobProcess.batch_lines()` reads the JSON line the CLI prints per batch.
- `landing`: `Landing` writes the input: generated files plus newer versions, late older versions and bad
  records, all deterministic.
- `expected`: `Expected`, what the tables must hold, computed from the files on disk alone.
- `ledger_views`: the job's SQLite or DynamoDB ledger, read-only.
- `tables`: the three Hudi tables' rows and timelines.
- `invariants`: `check_invariants`, the checks every fault scenario ends with.
- `recovery`: the fate of the batch a kill interrupted (abandoned, finished by recovery, committed before the
  kill), read from the ledger, the ingest log and the bronze timeline.
- `rows`: two bronze tables compared column by column.
- `proxy`: `TcpProxy` stands between the job and the moto server so a test can take the DynamoDB ledger away.

Assertion messages name ids, files, positions and counts only, never record contents.
"""

from __future__ import annotations

from .expected import Expected, InputRecord, expected, file_uri, scan
from .invariants import check_invariants
from .landing import Landing
from .ledger_views import DynamoLedgerView, LedgerView, SqliteLedgerView, wait_all_committed
from .processes import (
    CONTINUOUS_SETTINGS,
    EXIT_LEASE,
    KILLED,
    REPO,
    RESTART_SETTINGS,
    Job,
    JobProcess,
    Stopwatch,
    wait_until,
)
from .proxy import TcpProxy
from .recovery import (
    ABANDONED,
    COMMITTED,
    FINISHED,
    CrashedBatch,
    crashed_batch,
    fate,
    open_batch,
    replay_found_committed,
)
from .rows import BUSINESS_COLUMNS, business_rows, compare_business_rows
from .tables import bronze_instants, left_inflight, read_rows, tables, timeline

__all__ = [
    "ABANDONED",
    "BUSINESS_COLUMNS",
    "COMMITTED",
    "CONTINUOUS_SETTINGS",
    "EXIT_LEASE",
    "FINISHED",
    "KILLED",
    "REPO",
    "RESTART_SETTINGS",
    "CrashedBatch",
    "DynamoLedgerView",
    "Expected",
    "InputRecord",
    "Job",
    "JobProcess",
    "Landing",
    "LedgerView",
    "SqliteLedgerView",
    "Stopwatch",
    "TcpProxy",
    "bronze_instants",
    "business_rows",
    "check_invariants",
    "compare_business_rows",
    "crashed_batch",
    "expected",
    "fate",
    "file_uri",
    "left_inflight",
    "open_batch",
    "read_rows",
    "replay_found_committed",
    "scan",
    "tables",
    "timeline",
    "wait_all_committed",
    "wait_until",
]
