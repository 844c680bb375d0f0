"""What every catalog backend shares: read each table once, then call the store only when something changed.

Unlike Hudi's sync, nothing is written per commit (no `last_commit_time_sync`): Glue keeps a table version per
UpdateTable, so a table is updated only when its definition changes, and partitions are only ever added. What the
catalog holds is read once at start and kept in memory; `ensure` (at job start) also lists the partition folders
and adds the missing ones, so a crash between a Hudi commit and the catalog call heals on the next start.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streaming.catalog.defs import (
    TableDef,
    definition_differs,
    merged_definition,
    partition_input,
    partition_values,
    table_input,
)
from streaming.lakehouse import hadoop

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


class CatalogError(RuntimeError):
    """A catalog call failed; the message names the database, the table and the operation."""


@dataclass
class _Known:
    """What the catalog holds for one table, read once and then kept up to date by our own calls."""

    table_in: dict[str, Any]
    partitions: set[tuple[str, ...]] = field(default_factory=set)
    pending: dict[tuple[str, ...], str] = field(default_factory=dict)  # partitions a failed call did not add yet


class Catalog:
    """No catalog (backend "none"): nothing is registered. The real catalogs extend it."""

    def ensure(self, tables: Sequence[TableDef]) -> None:
        """At job start: create the database and the tables, update changed definitions, add missing partitions."""

    def sync(self, table: TableDef, partitions: Iterable[str] = ()) -> None:
        """After a write: update the definition if its columns changed and add the partitions not known yet."""


NoCatalog = Catalog


class KeptCatalog(Catalog):
    """The shared logic: read each table once, then call the store only when something changed."""

    def __init__(self, spark: SparkSession, database: str) -> None:
        self.spark = spark
        self.database = database
        self.spark_version = spark.version
        self._known: dict[str, _Known] = {}

    # The store: implemented by each backend.
    def _create_database(self) -> None:
        raise NotImplementedError

    def _read(self, name: str) -> tuple[dict[str, Any] | None, set[tuple[str, ...]]]:
        raise NotImplementedError

    def _create(self, table_in: dict[str, Any]) -> None:
        raise NotImplementedError

    def _update(self, table_in: dict[str, Any]) -> None:
        raise NotImplementedError

    def _add_partitions(self, name: str, inputs: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def ensure(self, tables: Sequence[TableDef]) -> None:
        self._create_database()
        for table in tables:
            self._known.pop(table.name, None)  # read again: someone may have changed the catalog since
            self._load(table)
            if table.partition_keys:  # self-healing: a crash after a commit may have left a partition unregistered
                self.sync(table, list_partition_paths(self.spark, table.location, len(table.partition_keys)))

    def sync(self, table: TableDef, partitions: Iterable[str] = ()) -> None:
        known = self._known.get(table.name) or self._load(table)
        desired = table_input(table, self.spark_version)
        if definition_differs(known.table_in, desired):
            merged = merged_definition(known.table_in, desired)
            self._update(merged)
            known.table_in = merged
            log.info("catalog %s.%s: definition updated (%d columns)", self.database, table.name, len(table.columns))
        new: dict[tuple[str, ...], str] = dict(known.pending)  # a batch's sync that failed is retried by the next
        for path in partitions:
            values = partition_values(path, table.partition_keys)
            if values is not None and values not in known.partitions:
                new.setdefault(values, path)
        if new:
            inputs = [partition_input(known.table_in, path, values) for values, path in sorted(new.items())]
            known.pending = new
            self._add_partitions(table.name, inputs)
            known.partitions |= set(new)
            known.pending = {}
            log.info("catalog %s.%s: %d partition(s) added", self.database, table.name, len(new))

    def _load(self, table: TableDef) -> _Known:
        stored, partitions = self._read(table.name)
        desired = table_input(table, self.spark_version)
        if stored is None:
            self._create(desired)
            stored = desired
            log.info("catalog %s.%s: table created", self.database, table.name)
        elif definition_differs(stored, desired):
            stored = merged_definition(stored, desired)
            self._update(stored)
            log.info("catalog %s.%s: definition updated (%d columns)", self.database, table.name, len(table.columns))
        known = _Known(stored, partitions)
        self._known[table.name] = known
        return known


def list_partition_paths(spark: SparkSession, location: str, depth: int) -> list[str]:
    """Relative partition paths (`k=v[/k2=v2]`) under a table, listed through Spark's Hadoop file system.

    One listing per level (one S3 LIST with delimiter for a single partition key); Hudi's `.hoodie` and any
    folder that is not `key=value` are skipped. Works for local, s3a:// and s3:// (S3A) tables alike.
    """
    jvm = hadoop.jvm(spark)
    root = jvm.org.apache.hadoop.fs.Path(location)
    fs = root.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(root):
        return []
    level: list[tuple[str, Any]] = [("", root)]
    for _ in range(depth):
        deeper = []
        for prefix, path in level:
            for status in fs.listStatus(path):
                name = status.getPath().getName()
                if status.isDirectory() and "=" in name and not name.startswith((".", "_")):
                    deeper.append((f"{prefix}/{name}" if prefix else name, status.getPath()))
        level = deeper
    return sorted(prefix for prefix, _ in level)
