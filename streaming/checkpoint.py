"""A checkpoint belongs to one table: stamped with it at the first start, and refused for any other.

Spark's checkpoint holds the file source's map of files already seen. Pointed at a new warehouse (a rebuild, a
rename) with the old checkpoint, the stream would never list those files again, and with an archive nothing would
say so. The stamp (`_bronze_table`, the bronze table's location in one spelling) is written through the
checkpoint's own Hadoop file system, so it works wherever the checkpoint does (local disk, S3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streaming.config import ConfigError, JobConfig, canonical_table_uri

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAMP = "_bronze_table"


class CheckpointMismatch(ConfigError):
    """The checkpoint served another table; using it would skip every file that table already took."""


def claim(spark: SparkSession, config: JobConfig, *, table_has_commits: bool) -> None:
    """Check the checkpoint serves this table and stamp it if it is not stamped yet (raises CheckpointMismatch).

    A checkpoint from before the stamp existed is adopted only if the table has data: committed batches in a
    checkpoint next to a table without a single commit mean the checkpoint served another table.
    """
    table = canonical_table_uri(config)
    uri = config.checkpoint_uri
    fs, root = _fs(spark, uri)
    jvm: Any = spark._jvm
    stamp = jvm.org.apache.hadoop.fs.Path(root, STAMP)
    if fs.exists(stamp):
        stream = fs.open(stamp)
        try:
            stamped = str(jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")).strip()
        finally:
            stream.close()
        if stamped != table:
            raise CheckpointMismatch(
                f"checkpoint {uri} belongs to table {stamped}, not {table}: use that table's warehouse, or give this"
                " table a checkpoint of its own (--checkpoint)"
            )
        return
    commits = jvm.org.apache.hadoop.fs.Path(root, "commits")
    batches = [s for s in fs.listStatus(commits) if s.getPath().getName()[:1].isdigit()] if fs.exists(commits) else []
    if batches and not table_has_commits:
        raise CheckpointMismatch(
            f"checkpoint {uri} has {len(batches)} committed batches but table {table} has no commit: it served another"
            " table; give this table a checkpoint of its own (--checkpoint), or point it back at its warehouse"
        )
    out = fs.create(stamp, True)
    try:
        out.write(bytearray(table.encode()))
    finally:
        out.close()


def _fs(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    jvm: Any = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark._jsc.hadoopConfiguration()), path
