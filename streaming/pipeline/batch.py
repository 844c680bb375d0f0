"""One micro-batch, as its steps.

`process_batch` lists the batch's files and drops those the ledger has committed, then runs `STEPS` in order (the
design page's step list is made from them); each is a named function over the batch's shared state (`_Batch`),
timed and reported under its name, and the fault harness kills the job after each (`after_<name>`). What a crash
between two steps leaves is finished or abandoned by `recovery.recover` before the next start.

The modules beside it hold what the steps call: `deps` (what a batch is given), `read` (the files to cached rows),
`ingest_log` (the log rows, written when due, off the latency path), `upkeep` (table services after the commit).

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
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from streaming.bronze.flatten import bronze_rows, quarantine_rows
from streaming.bronze.ordering import rows_deleted, settle_timeless_deletes, timeless_delete
from streaming.bronze.records import LandedFile
from streaming.catalog import table_def
from streaming.config import canonical_uri
from streaming.lakehouse.hudi import BATCH_KEY, BATCH_STATS
from streaming.ledger import BatchIntent
from streaming.pipeline import views as view_tables
from streaming.pipeline.deps import BatchDeps, BatchStats, batch_key, file_version, register
from streaming.pipeline.ingest_log import log_summary, write_log
from streaming.pipeline.read import BatchRead, read_apart
from streaming.pipeline.upkeep import run_due
from streaming.pipeline.views import ViewStats, ViewTable

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


log = logging.getLogger(__name__)


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


@dataclass
class _Batch:
    """What one batch's steps share: its files, what was read, what was written."""

    deps: BatchDeps
    batch_id: int
    started: datetime
    files: list[LandedFile]  # the batch's new files, by URI
    already: int  # files listed for the batch that the ledger had committed
    key: str = ""
    read: BatchRead | None = None
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
    batch.read = read_apart(batch.deps, batch.files, batch.started)
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
    register(deps, table_def(deps.quarantine, rejected.schema))


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
                live = written.where(~F.col("is_deleted"))
                # The batch's valid versions and deletes: at least the rows written, with no Spark job to count them.
                given = stats.rows_written + stats.delete_requests
                stale = deps.writer.kept_older(deps.encounter, commit, live, given)
                stats = replace(stats, rows_written=stats.rows_written - stale, rows_stale=stale)
        finally:
            written.unpersist()
    finally:
        if stored is not None:
            stored.unpersist()
    batch.stats, batch.instant = stats, commit.instant if commit else None
    # New hospitals become catalog partitions; a crash before this line heals at the next start (ensure).
    register(deps, table_def(deps.encounter, written.schema), commit.partitions if commit else ())


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
    register(deps, table_def(spec, rows.schema), commit.partitions if commit else ())


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
    batch.services, batch.failed = run_due(batch.deps, batch.key)


def _rows_of(batch: _Batch) -> BatchRead:
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
