"""What every part of a batch shares: its dependencies (`BatchDeps`), its statistics, how files and batches are
named in the ledger, and the catalog registration that follows each write."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from streaming.bronze.records import LandedFile
from streaming.catalog import Catalog, NoCatalog, TableDef
from streaming.config import IngestLogConfig, JobConfig
from streaming.lakehouse.hudi import HudiWriter, TableSpec, encounter_table, ingest_log_table
from streaming.lakehouse.hudi import quarantine_table as quarantine_spec
from streaming.ledger import Fence, Ledger
from streaming.pipeline.views import ViewTable

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchStats:
    """What one batch read and wrote; computed by a single aggregation over the flattened batch."""

    rows_in: int = 0
    rows_written: int = 0
    rows_deleted: int = 0  # encounters this batch turned into tombstones: live before, deleted after
    rows_rejected: int = 0
    rows_skipped: int = 0
    delete_requests: int = 0  # valid Bundle DELETE entries read, whether or not they removed anything
    # Versions the table kept a newer version over (an older one arriving late); not in rows_written. None: not
    # known (a batch whose bookkeeping recovery finished from the bronze commit, written before they were counted).
    rows_stale: int | None = 0

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BatchStats:
        """The statistics a bronze commit carries; rows_stale is counted after the commit, so it is not known."""
        known = {k: int(v) for k, v in json.loads(text).items() if k in cls.__dataclass_fields__}
        return replace(cls(**known), rows_stale=None)


@dataclass
class LogSchedule:
    """The batches whose ingest-log rows wait in the ledger, counted on the job's own clock (IngestLogConfig)."""

    waiting: int = 0
    since: float | None = None  # time.monotonic() when the oldest of them was committed

    def add(self, now: float) -> None:
        self.waiting += 1
        self.since = now if self.since is None else self.since

    def due(self, config: IngestLogConfig, now: float) -> bool:
        waited = self.since is not None and now - self.since >= config.every_seconds
        return self.waiting >= config.every_batches or (waited and config.every_seconds > 0)

    def reset(self) -> None:
        self.waiting, self.since = 0, None


@dataclass(frozen=True)
class BatchDeps:
    """Everything a batch touches, passed in so tests can give their own."""

    spark: SparkSession
    config: JobConfig
    ledger: Ledger
    writer: HudiWriter
    run_id: str
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # The writer lease's fence, checked before every write (raises LeaseLost once the lease may not be ours);
    # None: unfenced, for callers that hold no lease (unit tests).
    fence: Callable[[], Fence | None] = lambda: None
    # Files (uri, modification time) the stream assigned to a batch, zero-byte ones included (see source_log.py).
    source_files: Callable[[int], Sequence[tuple[str, datetime]]] | None = None
    # Files an operator asked to take again (`reingest`, `replay-quarantine`): ingested even if committed.
    retake: frozenset[str] = frozenset()
    # Of some of those files, only these positions (`replay-quarantine` takes back what was quarantined, not the
    # entries that landed the first time).
    positions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Where the tables are registered by name (Glue, local JSON); the default registers nothing.
    catalog: Catalog = field(default_factory=NoCatalog)
    # Called with `after_<step>` as each of STEPS completes: the fault harness kills or freezes the job there.
    # Nothing in production passes one.
    hook: Callable[[str], None] = lambda step: None
    # The views run besides encounter (views.run), each into its own table; none: the Encounter-only job.
    views: tuple[ViewTable, ...] = ()
    # When the ingest log is written next (shared by every copy of these deps: one per job).
    log_schedule: LogSchedule = field(default_factory=LogSchedule)

    @property
    def encounter(self) -> TableSpec:
        return encounter_table(self.config)

    @property
    def ingest_log(self) -> TableSpec:
        return ingest_log_table(self.config)

    @property
    def quarantine(self) -> TableSpec:
        return quarantine_spec(self.config)


def file_version(file: LandedFile) -> str:
    """What the ledger records of the version it read: size and modification time (the listing has no ETag)."""
    return f"{file.length}@{file.modified.astimezone(UTC).isoformat()}"


def batch_key(run_id: str, batch_id: int) -> str:
    return f"{run_id}-{batch_id:06d}"


def register(deps: BatchDeps, table: TableDef, partitions: Sequence[str] = ()) -> None:
    """Keep the catalog in step with a write; a catalog failure never fails a batch whose data is written.

    What a failed call did not register is retried with the next batch's call, and the next start adds any
    partition still missing (`Catalog.ensure`).
    """
    try:
        deps.catalog.sync(table, partitions)
    except Exception as exc:
        log.warning("catalog: registering %s failed (%s); retried later", table.name, type(exc).__name__)
