"""A checkpoint belongs to one table: stamped with it at the first start, and refused for any other.

Spark's checkpoint holds the file source's map of files already seen. Pointed at a new warehouse (a rebuild, a
rename) with the old checkpoint, the stream would never list those files again, and with an archive nothing would
say so. The stamp (`_bronze_table`, the bronze table's location in one spelling) is written through the
checkpoint's own Hadoop file system, so it works wherever the checkpoint does (local disk, S3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streaming.config import ConfigError, JobConfig, canonical_table_uri, join_uri
from streaming.lakehouse import hadoop

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
    stamp = join_uri(uri, STAMP)
    stamped = hadoop.read_text(spark, stamp)
    if stamped is not None:
        if stamped.strip() != table:
            raise CheckpointMismatch(
                f"checkpoint {uri} belongs to table {stamped.strip()}, not {table}: use that table's warehouse, or give"
                " this table a checkpoint of its own (--checkpoint)"
            )
        return
    batches = [s for s in hadoop.list_status(spark, join_uri(uri, "commits")) if s.getPath().getName()[:1].isdigit()]
    if batches and not table_has_commits:
        raise CheckpointMismatch(
            f"checkpoint {uri} has {len(batches)} committed batches but table {table} has no commit: it served another"
            " table; give this table a checkpoint of its own (--checkpoint), or point it back at its warehouse"
        )
    hadoop.write_text(spark, stamp, table)
