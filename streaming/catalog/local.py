"""The local catalog: table definitions as JSON files under the warehouse, and their registration in a Spark session.

The same TableInput + partitions as the Glue backend, one file per table at
`<warehouse>/_catalog/<database>/<table>.json`; `register_in_spark` turns them into session tables (a Derby Hive
metastore would lock out every other process).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streaming.adapters.storage import local_path
from streaming.catalog.sync import KeptCatalog
from streaming.config import ConfigError, JobConfig, is_remote, join_uri
from streaming.lakehouse import hadoop

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOCAL_CATALOG_DIR = "_catalog"


class LocalCatalog(KeptCatalog):
    """A JSON catalog under `<warehouse>/_catalog/<database>/<table>.json`: the TableInput and its partitions.

    A local warehouse is written atomically (temp file + rename); an s3a:// warehouse through Spark's Hadoop file
    system (S3A uploads an object whole on close, so a reader sees the old or the new file, never a part).
    """

    def __init__(self, spark: SparkSession, warehouse: str, database: str) -> None:
        super().__init__(spark, database)
        self.root = local_catalog_root(warehouse, database)
        self._docs: dict[str, dict[str, Any]] = {}

    def _uri(self, name: str) -> str:
        return join_uri(self.root, f"{name}.json")

    def _create_database(self) -> None:
        if not is_remote(self.root):
            Path(local_path(self.root)).mkdir(parents=True, exist_ok=True)

    def _read(self, name: str) -> tuple[dict[str, Any] | None, set[tuple[str, ...]]]:
        text = hadoop.read_text(self.spark, self._uri(name))
        doc = json.loads(text) if text else {"TableInput": None, "Partitions": []}
        self._docs[name] = doc
        return doc["TableInput"], {tuple(p["Values"]) for p in doc["Partitions"]}

    def _save(self, name: str) -> None:
        hadoop.write_text(self.spark, self._uri(name), json.dumps(self._docs[name], indent=1, sort_keys=True) + "\n")

    def _create(self, table_in: dict[str, Any]) -> None:
        self._update(table_in)

    def _update(self, table_in: dict[str, Any]) -> None:
        doc = self._docs.setdefault(table_in["Name"], {"Partitions": []})
        doc["TableInput"] = table_in
        self._save(table_in["Name"])

    def _add_partitions(self, name: str, inputs: list[dict[str, Any]]) -> None:
        self._docs[name]["Partitions"].extend(inputs)
        self._save(name)


def local_catalog_root(warehouse: str, database: str) -> str:
    """The folder of a database's table definitions in the local catalog."""
    return join_uri(warehouse, LOCAL_CATALOG_DIR, database)


def register_in_spark(spark: SparkSession, config: JobConfig) -> tuple[str, ...]:
    """Create the database and each table the local catalog knows in this session's catalog; returns their names.

    Any process (a notebook, `spark-sql`, a test) can then query `<database>.<table>` by name while the stream keeps
    writing: the session catalog is per process, the definitions are files. A table Hudi has not written yet (the
    quarantine of a clean feed) is skipped: Hudi's CREATE TABLE over a path without `.hoodie` needs a schema and
    would then initialise a table there itself, which is the writer's job, not a reader's.
    """
    if config.catalog.backend != "local":
        raise ConfigError(f"catalog.backend must be local to register tables in Spark, not {config.catalog.backend!r}")
    database = config.tables.database
    root = local_catalog_root(config.warehouse, database)
    names = sorted(
        n for s in hadoop.list_status(spark, root) if s.isFile() and (n := s.getPath().getName()).endswith(".json")
    )
    if not names:
        return ()
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {_ident(database)}")
    registered = []
    for name in names:
        text = hadoop.read_text(spark, join_uri(root, name))
        table_in = json.loads(text)["TableInput"] if text else None
        if not table_in:
            continue
        location = table_in["StorageDescriptor"]["Location"]
        if not hadoop.exists(spark, join_uri(location, ".hoodie", "hoodie.properties")):
            continue
        # Hudi's catalog reads the schema and keys from the table's own .hoodie folder: LOCATION is all it needs.
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS {_ident(database)}.{_ident(table_in['Name'])} USING hudi"
            f" LOCATION {_literal(location)}"
        )
        registered.append(table_in["Name"])
    return tuple(registered)


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
