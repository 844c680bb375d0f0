"""The file ledger: which landed files are committed to the bronze table, independent of Spark's checkpoint.

One contract, two stores: SQLite on local disk (the embedded default) and DynamoDB (`ledger_dynamodb.py`).
A micro-batch first records an *intent* (batch key + its files), then writes Hudi, then `commit`s: the files
become committed and the intent closes. An intent still open after a crash names exactly the files whose
bookkeeping a restart must finish (see docs/design.md, "Exactly once").

The same store holds the single-writer *lease* of a job, so two instances cannot write one table.
"""

from __future__ import annotations

from datetime import timedelta

from streaming.config import ConfigError, JobConfig
from streaming.ledger.base import (
    BatchIntent,
    Fence,
    LeaseHeld,
    LeaseLost,
    LeaseState,
    Ledger,
    LedgerMisconfigured,
    LedgerUnavailable,
    utc_iso,
)
from streaming.ledger.scoped import ScopedLedger
from streaming.ledger.sqlite import SqliteLedger

__all__ = [
    "BatchIntent",
    "Fence",
    "LeaseHeld",
    "LeaseLost",
    "LeaseState",
    "Ledger",
    "LedgerMisconfigured",
    "LedgerUnavailable",
    "SqliteLedger",
    "open_ledger",
    "utc_iso",
]


def open_ledger(config: JobConfig) -> Ledger:
    """The configured ledger store, keyed per table; it lives here so `status` can open it without pyspark."""
    store: Ledger
    if config.ledger.backend == "sqlite":
        store = SqliteLedger(config.ledger_path)
    elif config.ledger.backend == "dynamodb":
        from streaming.ledger.dynamodb import DynamoDbLedger

        ttl = timedelta(seconds=config.lease_ttl_seconds)
        store = DynamoDbLedger(config.ledger.table, region=config.ledger.region, lease_ttl=ttl)
    else:
        raise ConfigError(f"unknown ledger.backend {config.ledger.backend!r} (sqlite or dynamodb)")
    return ScopedLedger(store, config.table_uri(config.tables.encounter))
