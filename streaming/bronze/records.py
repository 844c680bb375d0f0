"""Spark side of reading landed files: run `parse.FileSplitter` on the executors, one task per group of files."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from streaming.adapters.storage import FileReadError, open_uri
from streaming.config import FhirConfig
from streaming.fhir.parse import ENCOUNTER_ONLY, FileSplitter, Record
from streaming.fhir.reasons import RECORD_TOO_LARGE, UNREADABLE

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

_ARROW_SCHEMA = pa.schema(
    [
        ("sourcename", pa.string()),
        ("position", pa.string()),
        ("kind", pa.string()),
        ("resource_type", pa.string()),
        ("resource_id", pa.string()),
        ("resource_json", pa.string()),
        ("ref_map", pa.map_(pa.string(), pa.string())),
        ("ref_names", pa.map_(pa.string(), pa.string())),
        ("reason", pa.string()),
        ("message", pa.string()),
        ("raw_slice", pa.string()),
        ("file_modified", pa.timestamp("us", tz="UTC")),
        # The record's place in its file (0, 1, ...): the last tie-break between versions (ordering.py).
        ("ordinal", pa.int32()),
        ("bundle_last_updated", pa.string()),
        ("bundle_timestamp", pa.string()),
        ("entry_last_modified", pa.string()),
        ("bundle_source", pa.string()),
    ]
)
_TYPES = _ARROW_SCHEMA.types
log = logging.getLogger(__name__)


def __getattr__(name: str) -> StructType:
    """`RECORD_SCHEMA`: the same schema for Spark (mapInArrow's output, test inputs), derived so the two cannot drift.

    Built on first use, on the driver: `from_arrow_schema` imports distutils/setuptools (0.3-0.5 s), which the
    Python workers that only run `split_files` never need.
    """
    if name == "RECORD_SCHEMA":
        from pyspark.sql.pandas.types import from_arrow_schema

        schema = from_arrow_schema(_ARROW_SCHEMA)
        globals()["RECORD_SCHEMA"] = schema
        return schema
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_FLUSH_ROWS = 2000
_FLUSH_BYTES = 64 * 1024**2  # keeps every Arrow string column far below its 2 GiB offset limit


@dataclass(frozen=True)
class LandedFile:
    """A file the stream listed: its URI as Spark names it, size and modification time."""

    uri: str
    length: int
    modified: datetime


# Errors of the S3 client stack (timeouts, throttling, a reset connection) are transient: they fail the task and
# Spark retries it. Quarantining the file for them would commit it with only the rows read so far.
_TRANSIENT_MODULES = ("botocore", "boto3", "urllib3", "s3transfer")


OUT_OF_MEMORY = "ran out of memory while parsing: lower fhir.max_document_bytes or give the workers more memory"


def _is_transient(exc: Exception) -> bool:
    return type(exc).__module__.partition(".")[0] in _TRANSIENT_MODULES


def _records(uri: str, length: int, splitter: FileSplitter) -> Iterator[tuple[int, Record]]:
    """(ordinal, record) of one file; a file-level failure ends it with one quarantine record (ordinal 0)."""
    try:
        with open_uri(uri) as raw:
            yield from enumerate(splitter.split(raw, length))
    except Exception as exc:
        # Checked first: botocore's timeouts and connection errors are OSError subclasses too.
        if _is_transient(exc):
            raise
        if isinstance(exc, MemoryError):
            # A document this worker cannot hold fails the same way on every retry: a poison file would stop the
            # stream for good. Quarantined (with the records read before it); fhir.max_document_bytes bounds it.
            log.error("parsing a file ran out of memory; file quarantined: %s", uri)
            yield 0, Record("quarantine", "file", reason=RECORD_TOO_LARGE, message=OUT_OF_MEMORY)
            return
        if isinstance(exc, FileNotFoundError):  # gone between listing and reading: recorded, never silent
            yield 0, _unreadable(f"cannot read: {type(exc).__name__}")
            return
        if isinstance(exc, OSError):  # there but unreadable: fail the batch, commit nothing (see FileReadError)
            raise FileReadError.of(uri, _detail(exc)) from exc
        # The splitter never raises for bad content; if some input still makes it fail, that file must not fail
        # every retry of the batch (a poison file would stop the stream for good): it is quarantined instead.
        log.error("splitting a file failed (%s); file quarantined: %s", type(exc).__name__, uri)
        yield 0, _unreadable(f"cannot split: {type(exc).__name__}")


def _detail(exc: OSError) -> str:
    """The error's class and, for S3, its error code (storage.open_uri puts it in parentheses); no content."""
    code = str(exc).partition("(")[2].partition(")")[0] if str(exc).startswith("s3 object") else ""
    return f"{type(exc).__name__}: {code}" if code else type(exc).__name__


def _unreadable(message: str) -> Record:
    return Record("quarantine", "file", reason=UNREADABLE, message=message)


def _row(uri: str, modified: object, record: Record, ordinal: int = 0) -> tuple[object, ...]:
    """One output row, in _ARROW_SCHEMA's order (tuples: a dict per row cost more to build and to convert)."""
    return (
        uri,
        record.position,
        record.kind,
        record.resource_type,
        record.resource_id,
        record.resource_json,
        list(record.ref_map.items()),
        list(record.ref_names.items()),
        record.reason,
        record.message,
        record.raw_slice,
        modified,
        ordinal,
        record.bundle_last_updated,
        record.bundle_timestamp,
        record.entry_last_modified,
        record.bundle_source,
    )


def _arrow(rows: list[tuple[object, ...]]) -> pa.RecordBatch:
    """Rows -> one Arrow batch, built column by column."""
    columns = zip(*rows, strict=True)
    return pa.RecordBatch.from_arrays(
        [pa.array(c, t) for c, t in zip(columns, _TYPES, strict=True)], schema=_ARROW_SCHEMA
    )


def split_files(
    limits: FhirConfig, batches: Iterator[pa.RecordBatch], types: frozenset[str] = ENCOUNTER_ONLY
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: files in, records out (resources of `types`), flushed in bounded Arrow batches."""
    splitter = FileSplitter(limits, types)
    pending: list[tuple[object, ...]] = []
    pending_bytes = 0
    for batch in batches:
        # The modification time stays microseconds since the epoch (Arrow's own value): turning it into a datetime
        # makes pyarrow import pandas in every worker.
        modified = batch.column(2).cast(pa.int64()).to_pylist()
        for uri, length, stamp in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), modified, strict=True):
            for ordinal, record in _records(uri, length, splitter):
                pending.append(_row(uri, stamp, record, ordinal))
                pending_bytes += len(record.resource_json or "") + len(record.raw_slice or "")
                if len(pending) >= _FLUSH_ROWS or pending_bytes >= _FLUSH_BYTES:
                    yield _arrow(pending)
                    pending, pending_bytes = [], 0
    if pending:
        yield _arrow(pending)


WORKER_DIED = (
    "the worker parsing this file died (killed, likely out of memory) when it was read alone: lower"
    " fhir.max_document_bytes or give the workers more memory, then `reingest` it"
)


def poison_records(spark: SparkSession, files: Sequence[LandedFile]) -> DataFrame:
    """One `record_too_large` quarantine record per file whose parsing kills the worker, made on the driver."""
    record = Record("quarantine", "file", reason=RECORD_TOO_LARGE, message=WORKER_DIED)
    names = _ARROW_SCHEMA.names
    rows = [
        {**dict(zip(names, _row(f.uri, f.modified, record), strict=True)), "ref_map": {}, "ref_names": {}}
        for f in files
    ]
    return spark.createDataFrame(rows, __getattr__("RECORD_SCHEMA"))


def read_records(
    spark: SparkSession, files: Sequence[LandedFile], limits: FhirConfig, types: frozenset[str] = ENCOUNTER_ONLY
) -> DataFrame:
    """Records of `files`: resources and deletes (of `types`), skipped resources and quarantined input, one row each."""
    slices = max(1, min(len(files), spark.sparkContext.defaultParallelism))  # one task per core: measured fastest
    # Largest first, dealt round-robin (parallelize cuts the list into contiguous slices), so the big files
    # spread over tasks instead of sharing one.
    ordered = sorted(files, key=lambda f: f.length, reverse=True)
    dealt = [ordered[i] for s in range(slices) for i in range(s, len(ordered), slices)]
    rdd = spark.sparkContext.parallelize([(f.uri, f.length, f.modified) for f in dealt], slices)
    listing = spark.createDataFrame(rdd, "uri string, length long, modified timestamp")
    return listing.mapInArrow(lambda batches: split_files(limits, iter(batches), types), __getattr__("RECORD_SCHEMA"))
