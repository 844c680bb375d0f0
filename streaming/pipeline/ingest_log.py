"""The ingest log, off the latency path: each committed batch's row waits in the ledger (its summary) and the rows
of every waiting batch are written in one upsert keyed by batch key (docs/decisions/deferred-ingest-log.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from streaming.bronze.columns import INGEST_LOG_SCHEMA
from streaming.catalog import table_def
from streaming.lakehouse.hudi import LOG_BATCHES
from streaming.ledger import BatchIntent
from streaming.ledger.log_summary import LogSummary
from streaming.pipeline.deps import BatchDeps, BatchStats, register

# Inside a write of the ingest log: its rows are in the table, their batches not yet closed in the ledger.
LOG_WRITTEN = "after_log_written"


def log_summary(already: int, stats: BatchStats, instant: str | None, ended: datetime, lag: float | None) -> str:
    """The summary the ledger keeps for a batch's ingest-log row until it is written (ledger/log_summary.py)."""
    return LogSummary(already, stats.__dict__, ended, instant, lag).to_json()


def log_row(intent: BatchIntent, summary: str) -> dict[str, Any]:
    """The ingest-log row of a committed batch, every count present (a summary of fewer counts gives them None)."""
    row = LogSummary.from_json(summary).row(intent)
    return {**dict.fromkeys(BatchStats.__dataclass_fields__), **row}


def write_log(deps: BatchDeps, *, in_batch: bool = False) -> int:
    """Write the ingest-log rows of every committed batch waiting in the ledger, then close those batches; how many.

    One upsert keyed by batch key: a crash before the ledger hears of it leaves them waiting, and the next write
    (at the next start at the latest) rewrites the same rows, never a second copy. `in_batch`: a batch's own
    write, where the fault harness may kill the job between the two (LOG_WRITTEN).
    """
    pending = deps.ledger.unlogged()
    deps.log_schedule.reset()
    if not pending:
        return 0
    df = deps.spark.createDataFrame([log_row(intent, summary) for intent, summary in pending], INGEST_LOG_SCHEMA)
    deps.fence()
    deps.writer.upsert(deps.ingest_log, df, {LOG_BATCHES: str(len(pending))})
    register(deps, table_def(deps.ingest_log, df.schema))
    if in_batch:
        deps.hook(LOG_WRITTEN)
    deps.ledger.logged([intent.batch_key for intent, _ in pending], deps.fence())
    return len(pending)
