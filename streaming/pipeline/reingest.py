"""Take named files again through the exactly-once path: `reingest` (a corrected file) and `replay-quarantine`.

Spark's file source lists a path once: a file overwritten under the same name is never listed again, and a file
whose records were quarantined stays committed. Both commands run one micro-batch over the named files with the
stream's own `process_batch` (ledger intent, quarantine, bronze upsert with event-time ordering, ingest-log row,
ledger commit), holding the table's writer lease, so they are refused while the stream or another backfill writes.

Afterwards the quarantine rows those files had before and that the new read did not produce again are deleted: the
file was read whole, so a row it no longer yields describes nothing. A crash between the batch and that clean-up
leaves the old rows; running the command again repeats both steps with the same result.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError
from pyspark.sql import functions as F

from streaming.adapters import aws, storage
from streaming.adapters.storage import local_path, split_s3_uri
from streaming.bronze.records import LandedFile
from streaming.config import ConfigError, JobConfig, is_remote, is_s3, spelled_like
from streaming.lakehouse.hudi import HudiWriter, quarantine_table
from streaming.ledger import open_ledger
from streaming.ledger.lease import writer_lease
from streaming.pipeline.batch import BatchResult, process_batch
from streaming.pipeline.deps import BatchDeps
from streaming.pipeline.ingest_log import write_log
from streaming.pipeline.job import RunSummary, new_run_id, writer_deps
from streaming.pipeline.read import only_positions
from streaming.pipeline.recovery import recover

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

LISTING_SCHEMA = "path string, length long, modificationTime timestamp"
WHOLE_FILE = "file"  # the position of a quarantine row that stands for the whole file (parse.py, records.py)


@dataclass(frozen=True)
class ReplayResult:
    """What `replay_quarantine` did: the files it took again and what became of their quarantine rows."""

    files: tuple[str, ...]
    rows_fixed: int  # quarantine rows removed: their records are now rows (or no longer exist in the file)
    rows_still_quarantined: int  # rows the files still produce after the new read
    summary: RunSummary


def as_listed(uri: str, source: str) -> str:
    """Spell `uri` as the stream names files: `file:/abs/path` locally, the source's scheme on S3."""
    if is_s3(uri):
        return spelled_like(uri, source)
    if is_remote(uri):
        raise ConfigError(f"cannot reingest {uri}: only local files and s3:// objects are supported")
    return f"file:{Path(local_path(uri)).expanduser().resolve()}"


def landed_file(uri: str, *, missing_ok: bool = False) -> LandedFile:
    """The file as the stream would list it: size and modification time; a missing file is a usage error.

    An S3 object moved back from the archive carries the time it first landed (storage.LANDED_AT): a copy's own
    LastModified is the moment of the copy, which would make its versions without an event time the newest.
    """
    try:
        if is_s3(uri):
            bucket, key = split_s3_uri(uri)
            head = aws.client("s3").head_object(Bucket=bucket, Key=key)
            landed = head.get("Metadata", {}).get(storage.LANDED_AT)
            modified = datetime.fromisoformat(landed) if landed else head["LastModified"]
            return LandedFile(uri, int(head["ContentLength"]), modified.astimezone(UTC))
        stat = os.stat(local_path(uri))
        return LandedFile(uri, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))
    except (OSError, ClientError) as exc:
        if missing_ok:  # the batch reads it and quarantines it as unreadable, which is what happened to it
            return LandedFile(uri, 0, datetime.now(UTC))
        raise ConfigError(f"cannot reingest {uri}: {type(exc).__name__}") from exc


def archived_uri(archive: str, uri: str) -> str:
    """Where the stream's file source archived `uri`: the archive folder plus the file's path (its key on S3)."""
    path = "/" + split_s3_uri(uri)[1] if is_s3(uri) else local_path(uri)
    return archive.rstrip("/") + path


def restore(config: JobConfig, uri: str, landed: datetime | None = None) -> str:
    """Move a file the stream archived (`source_archive`) back to where it landed, so it is taken under its URI.

    Its rows, ledger entry and quarantine rows name the landed URI. Back in the prefix it stays: the stream lists
    a path once, so it is neither ingested nor archived again by the stream. `landed`, the modification time the
    ledger recorded when the file was first taken, goes with it (see `landed_file`).
    """
    if config.source_archive and not storage.exists(uri):
        archived = archived_uri(config.source_archive, uri)
        if storage.exists(archived):
            storage.move(archived, uri, landed=landed)
            log.info("restored from the archive: %s", uri)
    return uri


def recorded_landing(version: str | None) -> datetime | None:
    """The modification time in a ledger version (`size@time`, see deps.file_version); None if there is none."""
    if not version or "@" not in version:
        return None
    try:
        return datetime.fromisoformat(version.split("@", 1)[1])
    except ValueError:
        return None


def reingest(config: JobConfig, uris: Sequence[str], *, spark: SparkSession | None = None) -> RunSummary:
    """Ingest the named files again (even if committed) in one exactly-once batch, newest version winning."""
    summary, _ = _take(config, [as_listed(u, config.source) for u in dict.fromkeys(uris)], spark, "reingest")
    return summary


def replay_quarantine(
    config: JobConfig, *, reason: str | None = None, spark: SparkSession | None = None
) -> ReplayResult:
    """Re-ingest the files behind quarantine rows (of one `reason`, or all), then drop the rows they fixed."""
    from streaming.lakehouse.session import build_spark

    spark = spark or build_spark(config.spark)
    spec = quarantine_table(config)
    if not HudiWriter(spark).exists(spec):
        return ReplayResult((), 0, 0, RunSummary(new_run_id()))
    rows = spark.read.format("hudi").load(spec.uri)
    chosen = rows if reason is None else rows.where(rows.reason == reason)
    quarantined: dict[str, set[str]] = {}
    for r in chosen.select("sourcename", "source_position").distinct().collect():
        quarantined.setdefault(r.sourcename, set()).add(r.source_position)
    uris = sorted(quarantined)
    if not uris:
        return ReplayResult((), 0, 0, RunSummary(new_run_id()))
    # Only what was quarantined comes back: the file's other entries landed the first time, and reading them again
    # would order them against today's table. A whole-file row (position `file`) takes the whole file.
    positions = {uri: frozenset(found) for uri, found in quarantined.items() if WHOLE_FILE not in found}
    summary, (fixed, remaining) = _take(config, uris, spark, "replay", missing_ok=True, positions=positions)
    return ReplayResult(tuple(uris), fixed, remaining, summary)


def _take(
    config: JobConfig,
    uris: Sequence[str],
    spark: SparkSession | None,
    purpose: str,
    *,
    missing_ok: bool = False,
    positions: Mapping[str, frozenset[str]] | None = None,
) -> tuple[RunSummary, tuple[int, int]]:
    """One batch over `uris` under the writer lease, then the quarantine clean-up (see `_drop_stale_quarantine`)."""
    from streaming.lakehouse.session import build_spark

    ledger = open_ledger(config)
    # The run id names the purpose, so the ingest log's batch key says why these files were read again.
    summary = RunSummary(f"{purpose}-{new_run_id()}")
    try:
        with writer_lease(ledger, config, summary.run_id) as lease:
            # Under the lease: a command refused because another instance writes moves no file back.
            recorded = ledger.versions(uris)
            files = [
                landed_file(restore(config, uri, recorded_landing(recorded.get(uri))), missing_ok=missing_ok)
                for uri in uris
            ]
            # A file gone since (a replay only: reingest refuses it) is read whole, so the batch records it as
            # `unreadable_file` like the stream does; its old rows stay, all that is left of those records.
            gone = frozenset(f.uri for f in files if missing_ok and not storage.exists(f.uri))
            spark = spark or build_spark(config.spark)
            deps = dataclasses.replace(
                writer_deps(spark, config, ledger, summary.run_id, lease),
                retake=frozenset(f.uri for f in files),
                positions={uri: found for uri, found in (positions or {}).items() if uri not in gone},
            )
            summary.recovery = recover(deps)  # finish a crashed batch first: its files may be among these
            listing = spark.createDataFrame([(f.uri, f.length, f.modified) for f in files], LISTING_SCHEMA)
            result = process_batch(listing, 0, deps)
            write_log(deps)  # its row now, not at the stream's next due write
            summary.batches.append(result)
            lease.check()  # the clean-up is a write too
            fixed, remaining = _drop_stale_quarantine(deps, result, gone)
    finally:
        ledger.close()
    log.info(
        "%s %s: %d files taken again, %d stale quarantine rows removed", purpose, summary.run_id, len(files), fixed
    )
    return summary, (fixed, remaining)


def _drop_stale_quarantine(deps: BatchDeps, result: BatchResult, gone: frozenset[str] = frozenset()) -> tuple[int, int]:
    """Delete the quarantine rows of the batch's files that this batch did not write again; those of files `gone`
    (nothing could be read again) all stay.

    Returns (rows removed, rows the files still have), both from one read of the table.
    """
    if result.batch_key is None or not deps.writer.exists(deps.quarantine):
        return 0, 0
    rows = deps.spark.read.format("hudi").load(deps.quarantine.uri).where(F.col("sourcename").isin(list(result.files)))
    if deps.positions:  # positions not read again say nothing about what they hold now
        rows = only_positions(rows, deps.positions)
    stale = (F.col("batch_key") != result.batch_key) & ~F.col("sourcename").isin(list(gone))
    rows = rows.withColumn("_stale", stale).persist()  # counted, then the stale keys are deleted
    try:
        counts = rows.agg(F.count(F.when(stale, 1)).alias("stale"), F.count(F.when(~stale, 1)).alias("kept")).first()
        assert counts is not None  # an aggregation without grouping always returns one row
        if counts["stale"]:
            deps.writer.delete(deps.quarantine, rows.where("_stale").select("quarantine_id", "quarantined_at"))
        return counts["stale"], counts["kept"]
    finally:
        rows.unpersist()
