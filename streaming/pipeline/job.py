"""Wire the streaming job: file source -> foreachBatch(process_batch), with lease, recovery and clean stop."""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from streaming.adapters.storage import FileReadError
from streaming.config import JobConfig, check_source, spelled_like
from streaming.lakehouse import checkpoint
from streaming.lakehouse.hudi import HudiWriter, encounter_table
from streaming.lakehouse.source_log import source_log
from streaming.ledger import LeaseLost, Ledger, LedgerUnavailable, open_ledger
from streaming.ledger.lease import WriterLease, writer_lease
from streaming.pipeline.batch import BatchResult, process_batch
from streaming.pipeline.deps import BatchDeps
from streaming.pipeline.failures import unwrap
from streaming.pipeline.ingest_log import write_log
from streaming.pipeline.recovery import Recovery, recover

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming.query import StreamingQuery

    from streaming.pipeline.metrics import Heartbeat

log = logging.getLogger(__name__)

# The file source's fixed schema; only path/length/modificationTime are selected, so file contents are never
# read by the source itself (the executors stream them in records.py).
BINARY_FILE_SCHEMA = "path string, modificationTime timestamp, length long, content binary"
MAX_FILE_AGE = "36500d"  # a century: no landed file is too old to be listed


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass
class RunSummary:
    """What one run did: its batches and what recovery found."""

    run_id: str
    recovery: Recovery = field(default_factory=Recovery)
    batches: list[BatchResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def files(self) -> int:
        return sum(len(b.files) for b in self.batches)

    @property
    def rows_written(self) -> int:
        return sum(b.stats.rows_written for b in self.batches)

    @property
    def rows_rejected(self) -> int:
        return sum(b.stats.rows_rejected for b in self.batches)


def start_stream(
    spark: SparkSession,
    config: JobConfig,
    deps: BatchDeps,
    *,
    once: bool,
    on_batch: list[BatchResult],
    observers: Sequence[Callable[[BatchResult], None]] = (),
) -> StreamingQuery:
    """Start the file source -> foreachBatch query; each batch's result is appended to `on_batch`, then observed."""
    check_source(config)  # a mistyped folder would otherwise be created and ingest nothing, with exit 0
    reader = (
        spark.readStream.format("binaryFile")
        .schema(BINARY_FILE_SCHEMA)
        .option("recursiveFileLookup", "true")
        # The default maxFileAge (7 days, measured from the newest file seen) silently never lists a file that lands
        # later with an older modification time (cp -p, rsync -a, tar). The ledger guards against re-ingestion, so
        # every file is listed; the cost is the source's in-memory seen-files map, which then only grows.
        .option("maxFileAge", MAX_FILE_AGE)
        .option("maxFilesPerTrigger", str(config.max_files_per_trigger))
    )
    if config.source_archive:
        # Spark moves a batch's files when it commits the batch: after process_batch returned, so after the ledger
        # commit; a crash before that leaves them in place and the replayed batch finds them.
        # Spelled with the source's scheme (s3 / s3a): Spark refuses an archive on another file system.
        archive = spelled_like(config.source_archive, config.source)
        reader = reader.option("cleanSource", "archive").option("sourceArchiveDir", archive)
    listing = reader.load(config.source).select("path", "length", "modificationTime")

    batch_deps = dataclasses.replace(deps, source_files=source_log(spark, config.checkpoint_uri))

    def each_batch(df: DataFrame, batch_id: int) -> None:
        result = process_batch(df, batch_id, batch_deps)
        on_batch.append(result)
        for observe in observers:
            try:
                observe(result)
            except Exception as exc:  # progress or metrics must never fail a batch that is already committed
                log.warning("batch %s: a batch observer failed (%s)", batch_id, type(exc).__name__)

    writer = (
        listing.writeStream.queryName(config.tables.encounter)
        .option("checkpointLocation", config.checkpoint_uri)
        .foreachBatch(each_batch)
    )
    writer = writer.trigger(availableNow=True) if once else writer.trigger(processingTime=config.trigger_interval)
    return writer.start()


def writer_deps(
    spark: SparkSession,
    config: JobConfig,
    ledger: Ledger,
    run_id: str,
    lease: WriterLease,
    hook: Callable[[str], None] | None = None,
) -> BatchDeps:
    """What a batch writes with, for whoever holds the lease (the stream, `reingest`).

    The catalog is ensured first: the tables exist by name from the first run, and partitions a crash left
    unregistered (between a Hudi commit and the catalog call) are added back.
    """
    from streaming.catalog import ensure_catalog, table_def
    from streaming.pipeline.views import empty_rows, load_views

    views = load_views(config)
    writer = HudiWriter(spark)
    writer.check_key(encounter_table(config))
    for view in views:
        writer.check_key(view.spec)
    now = datetime.now(UTC)
    defs = [table_def(v.spec, empty_rows(v, spark, now).schema) for v in views]
    deps = BatchDeps(
        spark=spark,
        config=config,
        ledger=ledger,
        writer=writer,
        run_id=run_id,
        catalog=ensure_catalog(spark, config, defs),
        fence=lease.check,
        views=views,
    )
    return dataclasses.replace(deps, hook=hook) if hook else deps


# A file that exists but cannot be read (403, KMS, Glacier) stops the stream until access is fixed; continuous
# mode tries again after these many seconds, doubling up to the cap.
FILE_RETRY_FIRST_SECONDS = 15.0
FILE_RETRY_MAX_SECONDS = 300.0


def run(
    config: JobConfig,
    *,
    once: bool,
    spark: SparkSession | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    stop: threading.Event | None = None,
    hook: Callable[[str], None] | None = None,
) -> RunSummary:
    """Run the job until the source is drained (`once`) or until SIGTERM/SIGINT (or `stop` is set), then stop.

    In continuous mode an outage stops the stream, not the job: a ledger outage is waited out, a file that cannot
    be read is tried again with backoff, then the job recovers and starts the stream again. With `once`, the
    error ends the run (exit codes 4 and 5) so a scheduler can retry. `on_batch` sees each batch's result as it
    finishes (the CLI's progress); so do the configured metrics. `hook` sees each step of each batch
    (`batch.STEPS`): the fault harness's way in; nothing in production passes one.
    """
    from streaming.lakehouse.session import build_spark
    from streaming.pipeline import metrics

    started = time.monotonic()
    published = metrics.publisher(config)  # a bad backend fails here
    ledger = open_ledger(config)  # first: a bad ledger setting fails before a JVM starts
    beat = metrics.heartbeat(config, published, ledger) if published is not None else None
    observers = [o for o in (published, beat, on_batch) if o is not None]
    summary = RunSummary(new_run_id())
    stop = stop or threading.Event()
    try:
        # The lease before the JVM: a second instance is refused without starting Spark.
        with _stop_on_signals(stop), writer_lease(ledger, config, summary.run_id) as lease:
            if beat is not None:
                beat.start()  # from here on the job says it is alive, and when it is blocked, whatever the batches do
            spark = spark or build_spark(config.spark)
            deps = writer_deps(spark, config, ledger, summary.run_id, lease, hook)
            checkpoint.claim(spark, config, table_has_commits=deps.writer.has_commits(deps.encounter))
            restarted = False
            retry_in = FILE_RETRY_FIRST_SECONDS
            while not stop.is_set():
                try:
                    if restarted:
                        lease.hold()  # an outage longer than the TTL may have let it expire
                    summary.recovery = recover(deps)
                    query = start_stream(spark, config, deps, once=once, on_batch=summary.batches, observers=observers)
                    _await(query, lease, stop)
                    write_log(deps)  # the rows not yet due: the log is complete when the job stops
                    break
                except Exception as exc:
                    error = unwrap(exc)
                    if once or not isinstance(error, LedgerUnavailable | FileReadError):
                        if error is exc:
                            raise
                        raise error from exc
                    retry_in = _wait_out(error, retry_in, ledger, stop, beat)
                    restarted = True
    finally:
        if beat is not None:
            beat.stop()
        ledger.close()
    summary.seconds = time.monotonic() - started
    return summary


def _wait_out(
    error: LedgerUnavailable | FileReadError,
    retry_in: float,
    ledger: Ledger,
    stop: threading.Event,
    beat: Heartbeat | None,
) -> float:
    """Wait out an outage that stopped the stream (continuous mode); the next file retry delay.

    An unreadable file: wait `retry_in` seconds (doubled for the next time, up to the cap). The ledger: probe it
    until it answers. The heartbeat says the job is blocked meanwhile.
    """
    if beat is not None:
        beat.blocked = "file_unreadable" if isinstance(error, FileReadError) else "ledger_unavailable"
    if isinstance(error, FileReadError):
        log.error("%s; stream stopped, trying again in %.0fs", error, retry_in)
        stop.wait(retry_in)
        return min(retry_in * 2, FILE_RETRY_MAX_SECONDS)
    log.error("ledger unavailable (%s); stream stopped until it answers again", error)
    _wait_for_ledger(ledger, stop)
    if beat is not None:
        beat.blocked = None  # it answers again (a file error is cleared by the next commit)
    return retry_in


def _wait_for_ledger(ledger: Ledger, stop: threading.Event, every: float = 5.0) -> None:
    """Probe the ledger until it answers (or a stop is requested), logging about once a minute."""
    waited = 0.0
    while not stop.wait(every):
        waited += every
        try:
            ledger.open_intents()
        except LedgerUnavailable:
            if waited % 60 < every:
                log.error("ledger still unavailable after %.0fs; waiting", waited)
            continue
        log.warning("ledger answers again after %.0fs; recovering and restarting the stream", waited)
        return


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set `stop` instead of killing the process, so the running batch can finish."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _await(query: StreamingQuery, lease: WriterLease, stop: threading.Event) -> None:
    """Wait for the query; on a stop request, stop it between batches; on a lost lease, at once."""
    while query.isActive:
        if lease.lost.is_set():
            # Nothing more may be written: the batch in flight fails at its next fence check anyway.
            query.stop()
            break
        if stop.is_set():
            # Let the running batch finish: stopping mid-batch is safe (recovery) but wasteful.
            deadline = time.monotonic() + 300
            while query.status["isTriggerActive"] and time.monotonic() < deadline and not lease.lost.is_set():
                time.sleep(0.2)
            query.stop()
            break
        query.awaitTermination(1)  # raises StreamingQueryException if a batch failed
    if lease.lost.is_set():
        raise LeaseLost("writer lease lost to another instance; stopped")
