"""The stream's own record of which files it assigned to a batch: its checkpoint's file-source log (sources/0).

Spark's file scan gives no rows for zero-byte files, but the source log lists them; reading it lets an empty file
be quarantined instead of silently skipped. Spark's own log class is used through the JVM, so compacted logs are
read correctly. This is the one place that touches Spark internals (`FileStreamSourceLog`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from streaming.lakehouse import hadoop

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def source_log(spark: SparkSession, checkpoint_uri: str) -> Callable[[int], list[tuple[str, datetime]]]:
    """The files (URI, modification time) Spark's file source assigned to each batch id, zero-byte ones included."""
    jvm = hadoop.jvm(spark)
    opened: list[Any] = []  # one log object for the whole query (it caches recent batches); made at first use

    def files(batch_id: int) -> list[tuple[str, datetime]]:
        if not opened:
            log_path = f"{checkpoint_uri.rstrip('/')}/sources/0"
            opened.append(
                jvm.org.apache.spark.sql.execution.streaming.FileStreamSourceLog(1, spark._jsparkSession, log_path)
            )
        # The log keeps URI-encoded paths; the batch DataFrame (and the ledger) use Hadoop Path strings.
        return [
            (
                jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(entry.path())).toString(),
                datetime.fromtimestamp(entry.timestamp() / 1000, UTC),
            )
            for entry in batch_entries(opened[0], batch_id)
        ]

    return files


def batch_entries(log: Any, batch_id: int) -> list[Any]:
    """The `FileEntry`s of one batch, filtered in the JVM as Spark's own `getBatch` does.

    The single-id `get(batch_id)` of a compaction batch (every 10th) returns the whole compacted history, which
    would then cross Py4J entry by entry. The range form `get(Some(id), Some(id))` keeps only the batch's entries;
    its `Option[Long]` bounds cannot be built from Python (Py4J hands an int over as an Integer), so the log's own
    `getLatestBatchId()` serves: the batch being processed is the newest the source has logged.
    """
    latest = log.getLatestBatchId()
    if latest.isDefined() and latest.get() == batch_id:
        return [entry for batch in log.get(latest, latest) for entry in batch._2()]
    found = log.get(batch_id)  # an older batch (never the stream's case): the whole file, filtered here
    return [e for e in found.get() if e.batchId() == batch_id] if found.isDefined() else []
