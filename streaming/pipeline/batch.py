"""One micro-batch, as its steps, and the recovery that finishes a batch a crash interrupted.

`process_batch` lists the batch's files and drops those the ledger has committed, then runs `STEPS` in order (the
README's step list is made from them); each is a named function over the batch's shared state (`_Batch`), timed and
reported under its name, and the fault harness kills the job after each (`after_<name>`). After a crash, `recover`
looks at every open intent: bronze commit present -> commit it in the ledger with a log summary made from the
commit's statistics; neither -> nothing of the batch counts: abandon the intent and let the replay (or a
re-listing) ingest the files again. (An ingest-log row present -> only the ledger commit is missing: the order of
an earlier release.) It then writes every waiting ingest-log row.

The ingest log is off the latency path: the ledger commit keeps each batch's log summary with its intent, and
`write_log` writes the rows of every waiting batch in one upsert when due (IngestLogConfig), at stop and at
recovery (docs/decisions/deferred-ingest-log.md).

The views besides encounter (`pipeline/views.py`) each write their table in a step of their own, `view_<name>`,
between the quarantine and bronze: bronze's commit, which recovery looks for, is then only ever there once every
view's table has committed the batch, and a crash before it replays the batch, whose upserts rewrite the same rows.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from streaming.bronze.columns import INGEST_LOG_SCHEMA
from streaming.bronze.flatten import bronze_rows, flatten, quarantine_rows
from streaming.bronze.ordering import rows_deleted, settle_timeless_deletes, timeless_delete
from streaming.bronze.records import LandedFile, poison_records, read_records
from streaming.catalog import Catalog, NoCatalog, TableDef, table_def
from streaming.config import IngestLogConfig, JobConfig, canonical_uri
from streaming.lakehouse.hudi import (
    BATCH_KEY,
    BATCH_STATS,
    CLEAN,
    CLUSTERING,
    LOG_BATCHES,
    HudiWriter,
    TableSpec,
    clustering_options,
    encounter_table,
    ingest_log_table,
)
from streaming.lakehouse.hudi import quarantine_table as quarantine_spec
from streaming.ledger import BatchIntent, Fence, LeaseLost, Ledger
from streaming.ledger.log_summary import LogSummary
from streaming.pipeline import views as view_tables
from streaming.pipeline.failures import worker_died
from streaming.pipeline.views import ViewStats, ViewTable

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

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


@dataclass(frozen=True)
class BatchResult:
    """What process_batch did, for logs, the CLI summary and tests."""

    batch_key: str | None
    files: tuple[str, ...]
    files_already_committed: int
    stats: BatchStats
    batch_id: int | None = None
    seconds: float = 0.0  # wall time of the whole batch, listing to ledger commit
    oldest_modified: datetime | None = None  # modification time of the oldest file the batch ingested
    ended_at: datetime | None = None
    services: tuple[str, ...] = ()  # table services run after the batch was committed (e.g. clustering)
    services_failed: tuple[str, ...] = ()  # those of them that failed (best effort: ingestion went on)
    timings: Mapping[str, float] = field(default_factory=dict)  # seconds per step (STEPS and the views' steps)
    log_rows: int = 0  # ingest-log rows written after this batch (its own and those waiting before it), if due
    views: Mapping[str, ViewStats] = field(default_factory=dict)  # what each view's table got (views.run)

    @property
    def lag_seconds(self) -> float | None:
        """How far behind the job is: from the oldest ingested file's modification time to the batch's end."""
        return lag_seconds(self.oldest_modified, self.ended_at)


def lag_seconds(oldest_modified: datetime | None, ended_at: datetime | None) -> float | None:
    """From the oldest ingested file's modification time to the batch's end; None when either is not known."""
    if oldest_modified is None or ended_at is None:
        return None
    return (ended_at.astimezone(UTC) - oldest_modified.astimezone(UTC)).total_seconds()


def file_version(file: LandedFile) -> str:
    """What the ledger records of the version it read: size and modification time (the listing has no ETag)."""
    return f"{file.length}@{file.modified.astimezone(UTC).isoformat()}"


def batch_key(run_id: str, batch_id: int) -> str:
    return f"{run_id}-{batch_id:06d}"


@dataclass
class _Batch:
    """What one batch's steps share: its files, what was read, what was written."""

    deps: BatchDeps
    batch_id: int
    started: datetime
    files: list[LandedFile]  # the batch's new files, by URI
    already: int  # files listed for the batch that the ledger had committed
    key: str = ""
    read: _Read | None = None
    stats: BatchStats = field(default_factory=BatchStats)
    instant: str | None = None  # the bronze commit, when the batch wrote one
    services: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    views: dict[str, ViewStats] = field(default_factory=dict)
    log_rows: int = 0  # ingest-log rows written after the ledger commit (when due)

    @property
    def uris(self) -> tuple[str, ...]:
        return tuple(f.uri for f in self.files)

    @property
    def oldest(self) -> datetime:
        # Spark hands naive local times, the source log aware UTC ones: astimezone makes both comparable.
        return min(f.modified.astimezone(UTC) for f in self.files)

    def intent(self) -> BatchIntent:
        return BatchIntent(self.key, self.deps.run_id, self.batch_id, self.uris, self.started)


def process_batch(listing: DataFrame, batch_id: int, deps: BatchDeps) -> BatchResult:
    """foreachBatch body: ingest the files of one micro-batch exactly once, step by step (STEPS)."""
    began = time.monotonic()
    batch = _list(listing, batch_id, deps)
    if not batch.files:
        log.info("batch %s: %d files, all already committed; nothing to do", batch_id, batch.already)
        seconds = time.monotonic() - began
        return BatchResult(None, (), batch.already, BatchStats(), batch_id, seconds, ended_at=deps.clock())
    timings: dict[str, float] = {}
    try:
        for step in batch_steps(deps.views):
            lap = time.monotonic()
            step.run(batch)
            timings[step.name] = round(time.monotonic() - lap, 2)
            deps.hook(f"after_{step.name}")
    finally:
        if batch.read is not None:
            batch.read.unpersist()
    _log_batch(batch, timings)
    return BatchResult(
        batch.key,
        batch.uris,
        batch.already,
        batch.stats,
        batch_id,
        time.monotonic() - began,
        oldest_modified=batch.oldest,
        ended_at=deps.clock(),
        services=batch.services,
        services_failed=batch.failed,
        timings=timings,
        views=dict(batch.views),
        log_rows=batch.log_rows,
    )


def _list(listing: DataFrame, batch_id: int, deps: BatchDeps) -> _Batch:
    """The batch's files, zero-byte ones included, less those the ledger has committed (unless taken again)."""
    started = deps.clock()
    listed = [LandedFile(r.path, r.length, r.modificationTime) for r in listing.collect()]
    if deps.source_files is not None:  # zero-byte files never reach the DataFrame; they must not vanish
        seen = {f.uri for f in listed}
        listed += [LandedFile(uri, 0, modified) for uri, modified in deps.source_files(batch_id) if uri not in seen]
    done = deps.ledger.committed(f.uri for f in listed) - deps.retake
    new = sorted((f for f in listed if f.uri not in done), key=lambda f: f.uri)
    return _Batch(deps, batch_id, started, new, len(done), key=batch_key(deps.run_id, batch_id))


def _begin(batch: _Batch) -> None:
    """Ledger intent: the batch key and its files, before anything is written."""
    batch.deps.ledger.begin(batch.intent(), batch.deps.fence())


def _read_step(batch: _Batch) -> None:
    """Read, split and flatten the files, cached once; one aggregation gives every count."""
    batch.read = _read_apart(batch.deps, batch.files, batch.started)
    batch.stats = batch.read.stats


def _quarantine(batch: _Batch) -> None:
    """Quarantine upsert of the rejected records, keyed by sha256(file, position): a rewrite replaces them."""
    deps, read = batch.deps, _rows_of(batch)
    views_rejected = read.versions is not None and any(c.rejected for c in read.counts.values())
    if not (batch.stats.rows_rejected or views_rejected):
        return
    rejected = quarantine_rows(read.rows, batch.key, batch.batch_id, batch.started)
    if views_rejected and read.versions is not None:
        bad = view_tables.rejected(read.versions, deps.views, deps.config.fhir.raw_slice_chars)
        rejected = rejected.unionByName(quarantine_rows(bad, batch.key, batch.batch_id, batch.started))
    deps.fence()  # Hudi has no lock of its own: a writer that lost its lease must not start a write
    deps.writer.upsert(deps.quarantine, rejected, {BATCH_KEY: batch.key})
    _register(deps, table_def(deps.quarantine, rejected.schema))


def _bronze(batch: _Batch) -> None:
    """Bronze upsert of one version per encounter (a bulk insert into a table without a commit); its commit carries
    the batch key and the counts."""
    deps, stats = batch.deps, batch.stats
    if not (stats.rows_written or stats.delete_requests):
        return
    # One version per encounter, chosen by the ordering rule; Hudi then orders it against the stored one.
    candidates = _rows_of(batch).rows.where("reject_reason IS NULL AND kind IN ('resource', 'delete')")
    keys = deps.encounter.key_columns
    # Into a table without a commit (the first batch, a backfill) no key can exist yet: nothing to look up.
    fresh = not deps.writer.has_commits(deps.encounter)
    write = deps.writer.bulk_insert if fresh else deps.writer.upsert
    # Persisted: the delete keys' stored versions are read once (the timeless deletes' ordering, the rows they
    # write, the count they delete), not once for each.
    stored = None if fresh or not stats.delete_requests else _stored_versions(deps, candidates).persist()
    try:
        if stats.delete_requests:
            candidates = _settle_deletes(deps, candidates, stored, batch.files, keys)
        # Persisted: counted against the table before and after the write, the per-key aggregation runs once.
        written = bronze_rows(candidates, keys).persist()
        try:
            if stored is not None:
                stats = replace(stats, rows_deleted=rows_deleted(written, stored, keys))
            deps.fence()
            write(deps.encounter, written, {BATCH_KEY: batch.key, BATCH_STATS: stats.to_json()})
            commit = deps.writer.find_commit(deps.encounter, batch.key)
            if commit is not None and not fresh:
                stale = deps.writer.kept_older(deps.encounter, commit, written.where(~F.col("is_deleted")))
                stats = replace(stats, rows_written=stats.rows_written - stale, rows_stale=stale)
        finally:
            written.unpersist()
    finally:
        if stored is not None:
            stored.unpersist()
    batch.stats, batch.instant = stats, commit.instant if commit else None
    # New hospitals become catalog partitions; a crash before this line heals at the next start (ensure).
    _register(deps, table_def(deps.encounter, written.schema), commit.partitions if commit else ())


def _view(table: ViewTable, batch: _Batch) -> None:
    """Upsert of one view's rows into its table (a bulk insert into a table without a commit), before bronze."""
    deps, read = batch.deps, _rows_of(batch)
    counts = read.counts.get(table.resource, ViewStats())
    if read.versions is None or not (counts.versions or counts.delete_requests):
        batch.views[table.name] = counts
        return
    spec = table.spec
    fresh = not deps.writer.has_commits(spec)
    # The stored rows are read only when they matter: a view whose newer version may give fewer rows (rows_vary),
    # or a batch with deletes (one without an event time is ordered against them). Otherwise Hudi's own ordering of
    # the one row per resource is the rule.
    stored = None if fresh or not (table.rows_vary or counts.delete_requests) else _stored_view(deps, table)
    candidates = view_tables.winners(read.versions, table.resource)
    found = None if stored is None else view_tables.stored_versions(stored)
    if counts.delete_requests:
        candidates = _settle_deletes(deps, candidates, found, batch.files, (view_tables.RESOURCE_KEY,))
    newest = view_tables.newest(candidates)
    if stored is None or found is None or not table.rows_vary:
        rows = view_tables.view_rows(table, newest, batch.started)
    else:
        newest = view_tables.not_older(newest, found)  # a late older version changes nothing, not even row counts
        rows = view_tables.view_rows(table, newest, batch.started)
        # Rows a newer version no longer gives become tombstones.
        rows = rows.unionByName(view_tables.vanished(table, newest, rows, stored, batch.started))
    deps.fence()
    write = deps.writer.bulk_insert if fresh else deps.writer.upsert
    write(spec, rows, {BATCH_KEY: batch.key, BATCH_STATS: json.dumps(counts.as_dict(), sort_keys=True)})
    commit = deps.writer.find_commit(spec, batch.key)
    written = commit.inserts + commit.updates if commit else 0
    batch.views[table.name] = replace(counts, rows_written=written)
    _register(deps, table_def(spec, rows.schema), commit.partitions if commit else ())


def _stored_view(deps: BatchDeps, table: ViewTable) -> DataFrame:
    """The key, ordering and is_deleted of every stored row of a view's table (it has a commit)."""
    return deps.writer.read(table.spec).select(*table.keys, "precombine_ts", "is_deleted")


def _commit(batch: _Batch) -> None:
    """Ledger commit: the files committed with the versions read; the intent stays, with what the batch's
    ingest-log row says, until that row is written."""
    deps = batch.deps
    versions = {f.uri: file_version(f) for f in batch.files}
    ended = deps.clock()
    summary = log_summary(batch.already, batch.stats, batch.instant, ended, lag_seconds(batch.oldest, ended))
    deps.ledger.commit(batch.key, batch.uris, ended, deps.fence(), versions, summary)


def _ingest_log(batch: _Batch) -> None:
    """Ingest log, when due (`ingest_log.every_batches` waiting or `every_seconds` waited): the rows of every
    committed batch waiting in the ledger, in one upsert keyed by batch key."""
    deps, now = batch.deps, time.monotonic()
    deps.log_schedule.add(now)
    if deps.log_schedule.due(deps.config.ingest_log, now):
        batch.log_rows = write_log(deps, in_batch=True)


def _services(batch: _Batch) -> None:
    """Table services when due (clustering, else cleaning), one a batch, after the commit and best effort: a
    failure never stops ingestion."""
    batch.services, batch.failed = _upkeep(batch.deps, batch.key)


def _rows_of(batch: _Batch) -> _Read:
    assert batch.read is not None  # the read step came first
    return batch.read


def _log_batch(batch: _Batch, timings: Mapping[str, float]) -> None:
    stats = batch.stats
    log.info(
        "batch %s (%s): files=%d already_committed=%d rows_in=%d written=%d deleted=%d (of %d delete requests)"
        " rejected=%d skipped=%d seconds=%s",
        batch.batch_id,
        batch.key,
        len(batch.files),
        batch.already,
        stats.rows_in,
        stats.rows_written,
        stats.rows_deleted,
        stats.delete_requests,
        stats.rows_rejected,
        stats.rows_skipped,
        dict(timings),
    )


@dataclass(frozen=True)
class Step:
    """One step of a batch: its name (in timings, logs, the fault harness's `after_<name>`) and what it does."""

    name: str
    run: Callable[[_Batch], None]

    @property
    def doc(self) -> str:
        return " ".join((self.run.__doc__ or "").split())


# The batch, in order. A crash between two of them is what recovery (and the fault harness) covers.
STEPS: tuple[Step, ...] = (
    Step("intent", _begin),
    Step("read", _read_step),
    Step("quarantine", _quarantine),
    Step("bronze", _bronze),
    Step("ledger", _commit),
    Step("ingest_log", _ingest_log),
    Step("upkeep", _services),
)
# Inside a write of the ingest log: its rows are in the table, their batches not yet closed in the ledger.
LOG_WRITTEN = "after_log_written"


def batch_steps(views: Sequence[ViewTable]) -> tuple[Step, ...]:
    """The steps of a batch: STEPS, with each view's step (`view_<name>`) after the quarantine, before bronze."""
    if not views:
        return STEPS
    at = next(i for i, step in enumerate(STEPS) if step.name == "bronze")
    own = tuple(Step(v.step, functools.partial(_view, v)) for v in views)
    return (*STEPS[:at], *own, *STEPS[at:])


def readme_steps() -> str:
    """The design page's step list (docs/design.md), made from STEPS."""
    lines = ["1. `list`: the batch's files, less those the ledger has committed (nothing left: nothing to do);"]
    for n, step in enumerate(STEPS, start=2):
        lines.append(f"{n}. `{step.name}`: {step.doc[:1].lower()}{step.doc[1:].rstrip('.')};")
    lines.append(f"{len(STEPS) + 2}. return: Spark commits the checkpoint.")
    return "\n".join(lines)


def _upkeep(deps: BatchDeps, key: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Table services due after a committed batch, on the job's own clock: (the one run, or none; if it failed).

    Clustering and cleaning of bronze and of every view's table; one service a batch at most, the longest overdue,
    so they never stack in one batch and none starves. Best effort: the batch is committed, so a failing service
    must not stop ingestion; it is tried again at its next due time. Only a lost lease stops here, since nothing
    more may be written then.
    """
    layout = deps.config.layout
    every = {CLUSTERING: layout.cluster_every_seconds, CLEAN: layout.clean_every_seconds}
    tables = {spec.name: spec for spec in _served(deps)}
    late = {
        (service, name): deps.writer.overdue(spec, service, seconds)
        for name, spec in tables.items()
        for service, seconds in every.items()
        if seconds
    }
    due = {pair: seconds for pair, seconds in late.items() if seconds is not None}
    if not due:
        return (), ()
    service, table = max(due, key=lambda pair: due[pair])  # the longest overdue
    spec = tables[table]
    # Bronze's services by their names (the metrics and the JSON line always had them); a view table's with it.
    name = service if table == deps.encounter.name else f"{service}:{table}"
    ok = _cluster(deps, key, spec) if service == CLUSTERING else _clean(deps, key, spec)
    return (name,), () if ok else (name,)


def _served(deps: BatchDeps) -> tuple[TableSpec, ...]:
    """The tables whose services the job runs: bronze and every view's table (not the small log and quarantine)."""
    return (deps.encounter, *(view.spec for view in deps.views))


def _clean(deps: BatchDeps, key: str, spec: TableSpec) -> bool:
    """Clean a table's old file versions and archive its timeline; a failure is logged and tried again when due."""
    deps.fence()
    try:
        deleted = deps.writer.clean(spec)
    except Exception as exc:
        log.warning("batch %s: %s clean failed (%s); ingestion goes on", key, spec.name, type(exc).__name__)
        return False
    log.info("batch %s: %s cleaned (%d old file versions deleted)", key, spec.name, deleted)
    return True


def _cluster(deps: BatchDeps, key: str, spec: TableSpec) -> bool:
    """Cluster a table; on a failure take the plan back (Hudi refuses upserts into a pending plan's file groups)."""
    every = deps.config.layout.cluster_every_seconds
    deps.fence()
    try:
        clustered = deps.writer.cluster(spec, clustering_options(deps.config), schedule=True)
    except Exception as exc:
        rolled_back = _take_back_clustering(deps, spec)
        log.warning(
            "batch %s: %s clustering failed (%s); %d pending plan(s) rolled back, ingestion goes on and it is"
            " tried again in %ds",
            key,
            spec.name,
            type(exc).__name__,
            len(rolled_back),
            every,
        )
        return False
    log.info("batch %s: %s clustered (%d plan(s))", key, spec.name, len(clustered))
    return True


def _take_back_clustering(deps: BatchDeps, spec: TableSpec) -> list[str]:
    """Roll back the pending clustering plans after a failure; if even that fails, the next upsert says so."""
    try:
        deps.fence()
        return deps.writer.rollback_clustering(spec)
    except LeaseLost:
        raise
    except Exception as exc:
        log.error("%s clustering: rolling back the failed plan failed too (%s)", spec.name, type(exc).__name__)
        return []


@dataclass(frozen=True)
class _Read:
    """A batch's flattened rows and their statistics, and the cached DataFrames they are made of."""

    rows: DataFrame
    stats: BatchStats
    cached: tuple[DataFrame, ...]
    # The views' resource versions, checked and ordered (views.checked_versions), and their counts by resource
    # type; None and empty when only encounter runs.
    versions: DataFrame | None = None
    counts: Mapping[str, ViewStats] = field(default_factory=dict)

    def unpersist(self) -> None:
        for df in self.cached:
            df.unpersist()


@dataclass(frozen=True)
class _Part:
    """What reading some of a batch's files gives: the flattened rows, the views' versions, the cached records."""

    rows: DataFrame
    versions: DataFrame | None = None
    records: DataFrame | None = None  # cached once for the Encounter path and the views alike

    @property
    def cached(self) -> tuple[DataFrame, ...]:
        return tuple(df for df in (self.rows, self.versions, self.records) if df is not None)

    def unpersist(self) -> None:
        for df in self.cached:
            df.unpersist()

    def fill(self) -> None:
        """Read now: the caches are filled, so this part is not read again together with the others."""
        self.rows.count()
        if self.versions is not None:
            self.versions.count()


def _assemble(parts: Sequence[_Part]) -> _Read:
    """The batch's read from its parts: rows and versions unioned, every statistic in one aggregation each."""
    rows = functools.reduce(lambda a, b: a.unionByName(b), [p.rows for p in parts])
    found = [p.versions for p in parts if p.versions is not None]
    versions = functools.reduce(lambda a, b: a.unionByName(b), found) if found else None
    counts = view_tables.type_counts(versions) if versions is not None else {}
    cached = tuple(df for p in parts for df in p.cached)
    return _Read(rows, _aggregate(rows), cached, versions, counts)


def _read_apart(deps: BatchDeps, files: Sequence[LandedFile], started: datetime) -> _Read:
    """The batch's rows, read whole; if a worker dies reading them, read apart until every part lands.

    A worker killed by the OS (out of memory) dies again on every retry of the same batch, so the stream would stop
    for good. Apart means the same work the batch does (split, flatten, cache), on halves of the files, each
    finished before the next starts: files that only die together then land. Only a file that kills its worker
    when read alone, twice, is quarantined; one that died for another reason and then parses lands.
    """
    whole = _read(deps, files, started)
    try:
        return _assemble([whole])
    except Exception as exc:
        whole.unpersist()
        if not worker_died(exc):
            raise
    log.error("a worker died reading the batch's %d files; reading them apart", len(files))
    parts, poison = _land(deps, files, started, died=1)
    if poison:
        log.error(
            "%d of %d files kill the parsing worker when read alone: %s",
            len(poison),
            len(files),
            [f.uri for f in poison],
        )
        parts.append(_read(deps, [], started, poison=poison))
    return _assemble(parts)


def _land(
    deps: BatchDeps, files: Sequence[LandedFile], started: datetime, *, died: int = 0
) -> tuple[list[_Part], list[LandedFile]]:
    """Read `files` as one finished (cached) part; on a worker death, each half apart; a file alone gets two tries.

    `died`: how often reading exactly these files already killed a worker. Returns the parts that landed and the
    files that killed their worker alone twice.
    """
    while died < (2 if len(files) == 1 else 1):
        part = _read(deps, files, started)
        try:
            part.fill()  # fills the cache: this part is read now, not together with the others at the write
            return [part], []
        except Exception as exc:
            part.unpersist()
            if not worker_died(exc):
                raise
            died += 1
    if len(files) == 1:
        return [], list(files)
    half = len(files) // 2
    first, first_poison = _land(deps, files[:half], started)
    second, second_poison = _land(deps, files[half:], started)
    return first + second, first_poison + second_poison


def _read(deps: BatchDeps, files: Sequence[LandedFile], started: datetime, poison: Sequence[LandedFile] = ()) -> _Part:
    """The batch's flattened records, cached for the statistics and the writes; `poison` files are quarantined.

    With views, the split records are cached once: the Encounter path flattens its records from them, the views
    check theirs (views.checked_versions).
    """
    fhir = deps.config.fhir
    readable = [f for f in files if f not in poison]
    types = view_tables.resource_types(deps.views)
    records = read_records(deps.spark, readable, fhir, types) if readable else None
    if poison:
        quarantined = poison_records(deps.spark, poison)
        records = quarantined if records is None else records.unionByName(quarantined)
    assert records is not None  # a batch has at least one file
    if not deps.views:
        return _Part(only_positions(_flatten(deps, records, started), deps.positions).persist())
    records = records.persist()
    rows = _flatten(deps, view_tables.encounter_records(records, deps.views), started)
    own = sorted({v.resource for v in deps.views})
    versions = view_tables.checked_versions(records, own, fhir.future_tolerance_hours)
    return _Part(
        only_positions(rows, deps.positions).persist(), only_positions(versions, deps.positions).persist(), records
    )


def _flatten(deps: BatchDeps, records: DataFrame, started: datetime) -> DataFrame:
    """The Encounter path's rows of `records` (flatten, with the job's settings)."""
    fhir = deps.config.fhir
    return flatten(
        records,
        ingested_at=started,
        keep_resource_json=fhir.keep_resource_json,
        raw_slice_chars=fhir.raw_slice_chars,
        future_tolerance_hours=fhir.future_tolerance_hours,
        key_scope=deps.config.key_scope,
        source=deps.config.source,
    )


def only_positions(rows: DataFrame, positions: Mapping[str, frozenset[str]]) -> DataFrame:
    """The rows of files limited to some positions (deps.positions) reduced to those; other files' rows all."""
    if not positions:
        return rows
    limited = F.col("sourcename").isin(list(positions))
    wanted = [F.lit(f"{uri}\u0000{p}") for uri, chosen in positions.items() for p in chosen]
    chosen = F.concat_ws("\u0000", "sourcename", "source_position").isin(wanted) if wanted else F.lit(False)
    return rows.where(~limited | chosen)


def _register(deps: BatchDeps, table: TableDef, partitions: Sequence[str] = ()) -> None:
    """Keep the catalog in step with a write; a catalog failure never fails a batch whose data is written.

    What a failed call did not register is retried with the next batch's call, and the next start adds any
    partition still missing (`Catalog.ensure`).
    """
    try:
        deps.catalog.sync(table, partitions)
    except Exception as exc:
        log.warning("catalog: registering %s failed (%s); retried later", table.name, type(exc).__name__)


def _aggregate(rows: DataFrame) -> BatchStats:
    """All batch statistics in one pass (this action also fills the cache the writes then read)."""
    good = F.col("reject_reason").isNull()
    row = rows.agg(
        F.count(F.lit(1)).alias("rows_in"),
        F.count(F.when((F.col("kind") == "resource") & good, 1)).alias("rows_written"),
        F.count(F.when((F.col("kind") == "delete") & good, 1)).alias("delete_requests"),
        F.count(F.when(~good, 1)).alias("rows_rejected"),
        F.count(F.when(F.col("kind") == "skipped", 1)).alias("rows_skipped"),
    ).first()
    assert row is not None  # an aggregation without grouping always returns one row
    return BatchStats(**row.asDict())


def decision_key(uri: str, version: str, position: str) -> str:
    """What a timeless DELETE's settled ordering is recorded under: the file's object, its version, the entry."""
    return hashlib.sha256("\u0000".join((canonical_uri(uri), version, position)).encode()).hexdigest()


def _settle_deletes(
    deps: BatchDeps,
    candidates: DataFrame,
    stored: DataFrame | None,
    files: Sequence[LandedFile],
    keys: Sequence[str] = ("encounter_id",),
) -> DataFrame:
    """Order each DELETE without a time as it was ordered the first time its file version was read.

    It takes an ordering just above the newest version it finds (ordering.settle_timeless_deletes), which depends on
    the table when it is applied. Read again (reingest, a replayed file), the same entry would find today's table:
    a newer version re-created since would be deleted. So the first decision per (file version, position) is kept
    in the ledger, before the write, and reused.
    """
    settled = settle_timeless_deletes(candidates, stored, keys)
    found = settled.where(timeless_delete()).select(
        "sourcename", "source_position", F.unix_micros("precombine_ts").alias("micros")
    )
    rows = found.collect()
    if not rows:
        return settled
    versions = {f.uri: file_version(f) for f in files}
    decided_as = {(r.sourcename, r.source_position): decision_key(r.sourcename, versions[r.sourcename],
                  r.source_position) for r in rows}  # fmt: skip
    known = deps.ledger.decisions(decided_as.values())
    fresh = {decided_as[(r.sourcename, r.source_position)]: str(r.micros) for r in rows}
    fresh = {k: v for k, v in fresh.items() if k not in known}
    if fresh:
        deps.ledger.decide(fresh, deps.fence())
    if not known:
        return settled
    reused = [(src, pos, int(known[k])) for (src, pos), k in decided_as.items() if k in known]
    decided = deps.spark.createDataFrame(reused, "sourcename string, source_position string, _decided long")
    ordering = F.coalesce(F.timestamp_micros("_decided"), F.col("precombine_ts"))
    joined = settled.join(F.broadcast(decided), ["sourcename", "source_position"], "left")
    return joined.withColumn("precombine_ts", ordering).select(*candidates.columns)


def _stored_versions(deps: BatchDeps, candidates: DataFrame) -> DataFrame:
    """(encounter_id, precombine_ts, is_deleted) of the stored versions of the batch's deleted keys (the table has
    a commit), from the files the record index names for them, not the whole table.

    Read only for batches with deletes, before the write (the writer lease keeps anyone else from writing in
    between): what the deletes remove, and what a delete without an event time takes its ordering from.
    """
    stored = deps.writer.read_keys(deps.encounter, candidates.where(F.col("kind") == "delete"))
    # Tables written before tombstones existed have no is_deleted column: all their rows are live.
    deleted = F.coalesce(F.col("is_deleted"), F.lit(False)) if "is_deleted" in stored.columns else F.lit(False)
    return stored.select(*deps.encounter.key_columns, "precombine_ts", deleted.alias("is_deleted"))


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
    _register(deps, table_def(deps.ingest_log, df.schema))
    if in_batch:
        deps.hook(LOG_WRITTEN)
    deps.ledger.logged([intent.batch_key for intent, _ in pending], deps.fence())
    return len(pending)


def _finish_clustering(deps: BatchDeps, spec: TableSpec) -> list[str]:
    """Run the clustering plans a crash left pending on a table (Hudi would refuse the next upserts into their
    files, see HudiWriter.cluster); roll them back if they fail. The plans finished."""
    pending = deps.writer.pending_clustering(spec)
    if not pending:
        return []
    deps.fence()
    try:
        deps.writer.cluster(spec, clustering_options(deps.config), schedule=False)
    except Exception as exc:  # a plan that fails every time must not keep the stream from starting
        deps.fence()
        deps.writer.rollback_clustering(spec)
        log.warning(
            "recovery: %d %s clustering plan(s) a crash left pending failed to run (%s); rolled back",
            len(pending),
            spec.name,
            type(exc).__name__,
        )
        return []
    log.warning("recovery: finished %d %s clustering plan(s) a crash left pending", len(pending), spec.name)
    return pending


@dataclass(frozen=True)
class Recovery:
    """What `recover` did with each open intent."""

    finished: tuple[str, ...] = ()  # log row and/or ledger commit completed from what Hudi had
    abandoned: tuple[str, ...] = ()  # nothing committed: files will be ingested again
    clustered: tuple[str, ...] = ()  # bronze clustering plans a crash left pending, run to completion


def recover(deps: BatchDeps) -> Recovery:
    """Finish or abandon every batch a crash left half done; run before the stream starts."""
    clustered = [instant for spec in _served(deps) for instant in _finish_clustering(deps, spec)]
    finished, abandoned = [], []
    for intent in deps.ledger.open_intents():
        logged = deps.writer.find_commit(deps.ingest_log, intent.batch_key)
        if logged is None:
            commit = deps.writer.find_commit(deps.encounter, intent.batch_key)
            if commit is None:
                deps.ledger.abandon(intent.batch_key, deps.fence())
                abandoned.append(intent.batch_key)
                log.warning(
                    "recovery: batch %s wrote nothing; its %d files will be re-ingested",
                    intent.batch_key,
                    len(intent.files),
                )
                continue
            stats = BatchStats.from_json(commit.extra.get(BATCH_STATS, "{}"))
            ended = deps.clock()
            summary = log_summary(0, stats, commit.instant, ended, None)
            deps.ledger.commit(intent.batch_key, intent.files, ended, deps.fence(), summary=summary)
        else:  # a row an earlier release wrote before its ledger commit: only the commit is missing
            deps.ledger.commit(intent.batch_key, intent.files, deps.clock(), deps.fence())
        finished.append(intent.batch_key)
        log.warning(
            "recovery: batch %s was written; bookkeeping finished for %d files", intent.batch_key, len(intent.files)
        )
    waiting = write_log(deps)  # the rows a crash (or a stop before they were due) left waiting
    if waiting:
        log.info("recovery: wrote %d ingest-log row(s) waiting in the ledger", waiting)
    return Recovery(tuple(finished), tuple(abandoned), tuple(clustered))
