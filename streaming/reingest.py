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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from streaming import aws
from streaming.batch import BatchDeps, BatchResult, process_batch, recover
from streaming.config import ConfigError, JobConfig, is_remote
from streaming.hudi import quarantine_table
from streaming.job import RunSummary, new_run_id, open_ledger, writer_deps
from streaming.lease import writer_lease
from streaming.records import LandedFile
from streaming.storage import local_path, split_s3_uri

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

_S3_SCHEMES = ("s3://", "s3a://", "s3n://")
LISTING_SCHEMA = "path string, length long, modificationTime timestamp"


@dataclass(frozen=True)
class ReplayResult:
    """What `replay_quarantine` did: the files it took again and what became of their quarantine rows."""

    files: tuple[str, ...]
    rows_fixed: int  # quarantine rows removed: their records are now rows (or no longer exist in the file)
    rows_still_quarantined: int  # rows the files still produce after the new read
    summary: RunSummary


def canonical_uri(uri: str, source: str) -> str:
    """Spell `uri` as the stream names files: `file:/abs/path` locally, the source's scheme on S3."""
    if uri.startswith(_S3_SCHEMES):
        if source.startswith(_S3_SCHEMES):
            return source.split("://", 1)[0] + "://" + uri.split("://", 1)[1]
        return uri
    if is_remote(uri):
        raise ConfigError(f"cannot reingest {uri}: only local files and s3:// objects are supported")
    return f"file:{Path(local_path(uri)).expanduser().resolve()}"


def landed_file(uri: str, *, missing_ok: bool = False) -> LandedFile:
    """The file as the stream would list it: size and modification time; a missing file is a usage error."""
    try:
        if uri.startswith(_S3_SCHEMES):
            bucket, key = split_s3_uri(uri)
            head = aws.client("s3").head_object(Bucket=bucket, Key=key)
            return LandedFile(uri, int(head["ContentLength"]), head["LastModified"].astimezone(UTC))
        stat = os.stat(local_path(uri))
        return LandedFile(uri, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))
    except (OSError, _client_error()) as exc:
        if missing_ok:  # the batch reads it and quarantines it as unreadable, which is what happened to it
            return LandedFile(uri, 0, datetime.now(UTC))
        raise ConfigError(f"cannot reingest {uri}: {type(exc).__name__}") from exc


def _client_error() -> type[Exception]:
    from botocore.exceptions import ClientError

    return ClientError


def reingest(config: JobConfig, uris: Sequence[str], *, spark: SparkSession | None = None) -> RunSummary:
    """Ingest the named files again (even if committed) in one exactly-once batch, newest version winning."""
    files = [landed_file(canonical_uri(u, config.source)) for u in dict.fromkeys(uris)]
    summary, _ = _take(config, files, spark, "reingest")
    return summary


def replay_quarantine(
    config: JobConfig, *, reason: str | None = None, spark: SparkSession | None = None
) -> ReplayResult:
    """Re-ingest the files behind quarantine rows (of one `reason`, or all), then drop the rows they fixed."""
    from streaming.session import build_spark

    spark = spark or build_spark(config.spark)
    rows = _quarantine(spark, config)
    if rows is None:
        return ReplayResult((), 0, 0, RunSummary(new_run_id()))
    chosen = rows if reason is None else rows.where(rows.reason == reason)
    uris = sorted(r.sourcename for r in chosen.select("sourcename").distinct().collect())
    if not uris:
        return ReplayResult((), 0, 0, RunSummary(new_run_id()))
    files = [landed_file(u, missing_ok=True) for u in uris]
    summary, fixed = _take(config, files, spark, "replay")
    still = _quarantine(spark, config)
    remaining = 0 if still is None else still.where(still.sourcename.isin(uris)).count()
    return ReplayResult(tuple(uris), fixed, remaining, summary)


def _quarantine(spark: SparkSession, config: JobConfig) -> DataFrame | None:
    """The quarantine table as a DataFrame, or None before its first row."""
    spec = quarantine_table(config)
    fs_path = spark._jvm.org.apache.hadoop.fs.Path(f"{spec.uri}/.hoodie/hoodie.properties")
    if not fs_path.getFileSystem(spark._jsc.hadoopConfiguration()).exists(fs_path):
        return None
    return spark.read.format("hudi").load(spec.uri)


def _take(
    config: JobConfig, files: Sequence[LandedFile], spark: SparkSession | None, purpose: str
) -> tuple[RunSummary, int]:
    """One batch over `files` under the writer lease, then the quarantine clean-up; returns rows removed."""
    from streaming.session import build_spark

    ledger = open_ledger(config)
    # The run id names the purpose, so the ingest log's batch key says why these files were read again.
    summary = RunSummary(f"{purpose}-{new_run_id()}")
    try:
        with writer_lease(ledger, config, summary.run_id) as lease:
            spark = spark or build_spark(config.spark)
            deps = dataclasses.replace(
                writer_deps(spark, config, ledger, summary.run_id, lease), retake=frozenset(f.uri for f in files)
            )
            summary.recovery = recover(deps)  # finish a crashed batch first: its files may be among these
            listing = spark.createDataFrame([(f.uri, f.length, f.modified) for f in files], LISTING_SCHEMA)
            result = process_batch(listing, 0, deps)
            summary.batches.append(result)
            lease.check()  # the clean-up is a write too
            fixed = _drop_stale_quarantine(deps, result)
    finally:
        ledger.close()
    log.info(
        "%s %s: %d files taken again, %d stale quarantine rows removed", purpose, summary.run_id, len(files), fixed
    )
    return summary, fixed


def _drop_stale_quarantine(deps: BatchDeps, result: BatchResult) -> int:
    """Delete the quarantine rows of the batch's files that this batch did not write again."""
    if result.batch_key is None:
        return 0
    rows = _quarantine(deps.spark, deps.config)
    if rows is None:
        return 0
    stale = rows.where(rows.sourcename.isin(list(result.files)) & (rows.batch_key != result.batch_key)).select(
        "quarantine_id", "quarantined_at"
    )
    count = stale.count()
    if count:
        deps.writer.delete(deps.quarantine, stale)
    return count
