"""The stream's own record of which files it assigned to a batch: its checkpoint's file-source log (sources/0).

Spark's file scan gives no rows for zero-byte files, but the source log lists them; reading it lets an empty file
be quarantined instead of silently skipped. Spark's own log class is used through the JVM, so compacted logs are
read correctly. This is the one place that touches Spark internals (`FileStreamSourceLog`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def source_log(spark: SparkSession, checkpoint_uri: str) -> Callable[[int], list[tuple[str, datetime]]]:
    """The files (URI, modification time) Spark's file source assigned to each batch id, zero-byte ones included."""
    jvm = spark._jvm
    opened: list[Any] = []  # one log object for the whole query (it caches recent batches); made at first use

    def files(batch_id: int) -> list[tuple[str, datetime]]:
        if not opened:
            log_path = f"{checkpoint_uri.rstrip('/')}/sources/0"
            opened.append(
                jvm.org.apache.spark.sql.execution.streaming.FileStreamSourceLog(1, spark._jsparkSession, log_path)
            )
        entries = opened[0].get(batch_id)
        if not entries.isDefined():
            return []
        # The log keeps URI-encoded paths; the batch DataFrame (and the ledger) use Hadoop Path strings.
        return [
            (
                jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(entry.path())).toString(),
                datetime.fromtimestamp(entry.timestamp() / 1000, UTC),
            )
            for entry in entries.get()
            # A compaction batch (every 10th) returns the whole compacted history: keep this batch's entries only.
            if entry.batchId() == batch_id
        ]

    return files
