"""Register the three Hudi tables by name: in the AWS Glue Data Catalog (boto3), a local JSON catalog, or nowhere.

The definitions are the ones Hudi's own Glue sync (`AWSGlueCatalogSyncClient`, module hudi-aws) writes, so Athena
reads the tables as Hudi copy-on-write tables: Hudi's five meta columns first, Hive types derived from the Spark
schema that is written, the partition column as a partition key only, Hudi's input format and the Parquet serde,
and the Spark datasource properties (`spark.sql.sources.*`) so Spark reads them through Hudi too.

Unlike Hudi's sync, nothing is written per commit (no `last_commit_time_sync`): Glue keeps a table version per
UpdateTable, so the table is updated only when its definition changes, and partitions are only ever added. What the
catalog holds is read once at start and kept in memory; `ensure` (at job start) also lists the partition folders
and adds the missing ones, so a crash between a Hudi commit and the catalog call heals on the next start.

The local backend keeps the same TableInput + partitions as JSON under `<warehouse>/_catalog/<database>/`, and
`register_in_spark` turns them into session tables (a Derby Hive metastore would lock out every other process).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from streaming import aws
from streaming.config import ConfigError, JobConfig, is_remote, join_uri, s3_spelling
from streaming.hudi import TableSpec, encounter_table, ingest_log_table, quarantine_table
from streaming.storage import local_path

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import DataType, StructType

log = logging.getLogger(__name__)

# Hudi adds these to every table, in this order, before the data columns (its sync registers them the same way).
META_COLUMNS: tuple[str, ...] = (
    "_hoodie_commit_time",
    "_hoodie_commit_seqno",
    "_hoodie_record_key",
    "_hoodie_partition_path",
    "_hoodie_file_name",
)
# Copy-on-write snapshot reads, as Hudi's sync registers a COW table (HoodieInputFormatUtils, Parquet base files).
INPUT_FORMAT = "org.apache.hudi.hadoop.HoodieParquetInputFormat"
OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
# Hudi's hoodie.datasource.hive_sync.schema_string_length_thresh: the Spark schema JSON is cut into parts this long.
SCHEMA_PART_CHARS = 4000
# Athena v2/v3 table property Hudi's Glue sync writes; FALSE as Hudi's default (plain listing, no metadata table).
METADATA_LISTING = "hudi.metadata-listing-enabled"
CREATE_VERSION = "spark.sql.create.version"
MAX_PARTITIONS_PER_CALL = 100  # BatchCreatePartition's limit
LOCAL_CATALOG_DIR = "_catalog"


class CatalogError(RuntimeError):
    """A catalog call failed; the message names the database, the table and the operation."""


class UnsupportedColumnType(ValueError):
    """A Spark column type has no Hive type the catalog can register."""


def hive_type(data_type: DataType) -> str:
    """The Hive type string Hudi's sync registers for a Spark type (lower case, no spaces)."""
    from pyspark.sql import types as T

    if isinstance(data_type, T.StructType):
        return "struct<" + ",".join(f"{f.name}:{hive_type(f.dataType)}" for f in data_type.fields) + ">"
    if isinstance(data_type, T.ArrayType):
        return f"array<{hive_type(data_type.elementType)}>"
    if isinstance(data_type, T.MapType):
        return f"map<{hive_type(data_type.keyType)},{hive_type(data_type.valueType)}>"
    if isinstance(data_type, T.DecimalType):
        return f"decimal({data_type.precision},{data_type.scale})"
    simple: tuple[tuple[type, str], ...] = (
        (T.StringType, "string"),
        (T.LongType, "bigint"),
        # Spark writes byte and short as Parquet INT32, which Hive reads as int.
        (T.IntegerType, "int"),
        (T.ShortType, "int"),
        (T.ByteType, "int"),
        (T.BooleanType, "boolean"),
        (T.DoubleType, "double"),
        (T.FloatType, "float"),
        # Hudi's sync maps TIMESTAMP_MICROS to timestamp (hive_sync.support_timestamp, true from Spark writers).
        (T.TimestampType, "timestamp"),
        (T.TimestampNTZType, "timestamp"),
        (T.DateType, "date"),
        (T.BinaryType, "binary"),
    )
    for spark_type, name in simple:
        if isinstance(data_type, spark_type):
            return name
    raise UnsupportedColumnType(f"no Hive type for Spark type {data_type.simpleString()}")


def partition_value(folder: str, key: str) -> str | None:
    """The value of one `key=value` partition folder, URL-decoded; None when the folder is not one of `key`.

    Hudi URL-encodes ``"#%'*/:=?[\\]^{`` and control characters in a folder name (partitionpath.urlencode), so the
    folder `hospital_partition=St. Mary%27s` holds the value `St. Mary's`, which is what the column holds and what a
    query filters on.
    """
    name, sep, value = folder.partition("=")
    if not sep or name != key:
        return None
    return unquote(value)


def partition_values(path: str, keys: Sequence[str]) -> tuple[str, ...] | None:
    """The values of a relative partition path (`k1=v1/k2=v2`) for `keys`; None when it does not match them."""
    folders = path.strip("/").split("/") if path.strip("/") else []
    if not keys or len(folders) != len(keys):
        return None
    values = [partition_value(folder, key) for folder, key in zip(folders, keys, strict=True)]
    return None if any(v is None for v in values) else tuple(v for v in values if v is not None)


def catalog_uri(uri: str) -> str:
    """A table location as Athena expects it: `s3://`, never `s3a://` or `s3n://` (Hudi's sync does the same)."""
    return s3_spelling(uri)


@dataclass(frozen=True)
class TableDef:
    """One table to register: its name, where it lives, the Spark schema that is written and its partition keys."""

    name: str
    location: str  # as the job writes it (local path, s3a:// or s3://); registered through catalog_uri
    schema: StructType  # the written columns, partition column included, without Hudi's meta columns
    partition_keys: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[tuple[str, str], ...]:
        """Hudi's meta columns, then the data columns with Hive types; partition keys left out, as Hive requires."""
        data = tuple((f.name, hive_type(f.dataType)) for f in self.schema.fields if f.name not in self.partition_keys)
        return tuple((name, "string") for name in META_COLUMNS) + data

    @property
    def partition_columns(self) -> tuple[tuple[str, str], ...]:
        """Partition keys with Hive types; a key that is not a written column is a string (as in Hudi's sync)."""
        names = set(self.schema.fieldNames())
        return tuple(
            (key, hive_type(self.schema[key].dataType) if key in names else "string") for key in self.partition_keys
        )

    def spark_schema_json(self) -> str:
        """The Spark schema JSON Hudi stores in `spark.sql.sources.schema`: meta, data, then partition columns."""
        from pyspark.sql.types import StringType, StructField, StructType

        names = set(self.schema.fieldNames())
        fields = [StructField(name, StringType(), True) for name in META_COLUMNS]
        fields += [f for f in self.schema.fields if f.name not in self.partition_keys]
        fields += [
            self.schema[key] if key in names else StructField(key, StringType(), True) for key in self.partition_keys
        ]
        # Field metadata is Spark-internal (Hudi's sync writes `{}`); compact JSON in Scala's key order.
        plain = StructType([StructField(f.name, f.dataType, f.nullable) for f in fields])
        return json.dumps(plain.jsonValue(), separators=(",", ":"))


def table_def(spec: TableSpec, schema: StructType) -> TableDef:
    """The catalog definition of a Hudi table written with `schema`."""
    return TableDef(spec.name, spec.uri, schema, (spec.partition,) if spec.partition else ())


def table_defs(spark: SparkSession, config: JobConfig) -> tuple[TableDef, ...]:
    """The three tables with the schemas the batch writes, derived from the code on empty DataFrames (no data)."""
    from streaming import batch  # here, not at the top: batch imports this module
    from streaming.flatten import BRONZE_COLUMNS, flatten
    from streaming.records import RECORD_SCHEMA

    now = datetime.now(UTC)
    rows = flatten(
        spark.createDataFrame([], RECORD_SCHEMA),
        ingested_at=now,
        keep_resource_json=config.fhir.keep_resource_json,
        raw_slice_chars=config.fhir.raw_slice_chars,
    )
    bronze = rows.select(*BRONZE_COLUMNS, "_hoodie_is_deleted").schema
    quarantine = batch._quarantine_rows(rows, "", 0, now).schema
    ingest_log = spark.createDataFrame([], batch.INGEST_LOG_SCHEMA).schema
    return (
        table_def(encounter_table(config), bronze),
        table_def(ingest_log_table(config), ingest_log),
        table_def(quarantine_table(config), quarantine),
    )


def spark_table_properties(table: TableDef, spark_version: str) -> dict[str, str]:
    """The Spark datasource properties Hudi's sync writes, so Spark reads the table through Hudi."""
    props = {"spark.sql.sources.provider": "hudi", CREATE_VERSION: spark_version}
    text = table.spark_schema_json()
    parts = [text[i : i + SCHEMA_PART_CHARS] for i in range(0, len(text), SCHEMA_PART_CHARS)]
    props["spark.sql.sources.schema.numParts"] = str(len(parts))
    props.update({f"spark.sql.sources.schema.part.{i}": part for i, part in enumerate(parts)})
    if table.partition_keys:
        props["spark.sql.sources.schema.numPartCols"] = str(len(table.partition_keys))
        props.update({f"spark.sql.sources.schema.partCol.{i}": key for i, key in enumerate(table.partition_keys)})
    return props


def table_input(table: TableDef, spark_version: str) -> dict[str, Any]:
    """The Glue TableInput of a Hudi copy-on-write table, field for field as Hudi's Glue sync builds it."""
    location = catalog_uri(table.location)
    return {
        "Name": table.name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"EXTERNAL": "TRUE", METADATA_LISTING: "FALSE", **spark_table_properties(table, spark_version)},
        "PartitionKeys": [{"Name": name, "Type": kind} for name, kind in table.partition_columns],
        "StorageDescriptor": {
            "Columns": [{"Name": name, "Type": kind} for name, kind in table.columns],
            "Location": location,
            "InputFormat": INPUT_FORMAT,
            "OutputFormat": OUTPUT_FORMAT,
            "SerdeInfo": {
                "SerializationLibrary": SERDE,
                "Parameters": {"hoodie.query.as.ro.table": "false", "path": location, "serialization.format": "1"},
            },
        },
    }


def partition_input(table_in: Mapping[str, Any], path: str, values: Sequence[str]) -> dict[str, Any]:
    """A partition as Hudi's sync adds it: the table's storage descriptor, located at the partition folder."""
    sd = copy.deepcopy(dict(table_in["StorageDescriptor"]))
    sd["Location"] = f"{sd['Location'].rstrip('/')}/{path.strip('/')}"
    return {"Values": list(values), "StorageDescriptor": sd}


def _columns(items: Iterable[Mapping[str, Any]] | None) -> list[tuple[str, str]]:
    return [(str(c["Name"]), str(c["Type"]).lower()) for c in items or ()]


def _differs(stored: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether the stored table lacks anything of the desired definition (extra parameters of others are fine)."""
    s_sd, d_sd = stored.get("StorageDescriptor") or {}, desired["StorageDescriptor"]
    if _columns(s_sd.get("Columns")) != _columns(d_sd["Columns"]):
        return True
    if _columns(stored.get("PartitionKeys")) != _columns(desired["PartitionKeys"]):
        return True
    if stored.get("TableType") != desired["TableType"]:
        return True
    if any(s_sd.get(k) != d_sd[k] for k in ("Location", "InputFormat", "OutputFormat")):
        return True
    s_serde, d_serde = s_sd.get("SerdeInfo") or {}, d_sd["SerdeInfo"]
    if s_serde.get("SerializationLibrary") != d_serde["SerializationLibrary"]:
        return True
    if (s_serde.get("Parameters") or {}) != d_serde["Parameters"]:
        return True
    params = stored.get("Parameters") or {}
    # The Spark version that created the table stays what it was.
    return any(params.get(k) != v for k, v in desired["Parameters"].items() if k != CREATE_VERSION)


def _merged(stored: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The TableInput for an UpdateTable: ours, keeping parameters, description and owner others have set."""
    params = {**(stored.get("Parameters") or {}), **desired["Parameters"]}
    if CREATE_VERSION in (stored.get("Parameters") or {}):
        params[CREATE_VERSION] = stored["Parameters"][CREATE_VERSION]
    kept = {k: stored[k] for k in ("Description", "Owner") if k in stored}
    return {**kept, **desired, "Parameters": params}


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


class _KeptCatalog(Catalog):
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
        if _differs(known.table_in, desired):
            merged = _merged(known.table_in, desired)
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
        elif _differs(stored, desired):
            stored = _merged(stored, desired)
            self._update(stored)
            log.info("catalog %s.%s: definition updated (%d columns)", self.database, table.name, len(table.columns))
        known = _Known(stored, partitions)
        self._known[table.name] = known
        return known


class GlueCatalog(_KeptCatalog):
    """The AWS Glue Data Catalog, through boto3 (moto locally, via AWS_ENDPOINT_URL)."""

    def __init__(self, spark: SparkSession, database: str, region: str = "") -> None:
        super().__init__(spark, database)
        self.glue = aws.client("glue", region)

    def _call(self, operation: str, table: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.glue, operation)(**kwargs)
        except self.glue.exceptions.EntityNotFoundException:
            raise
        except self.glue.exceptions.AlreadyExistsException:
            raise
        except Exception as exc:
            target = f"{self.database}.{table}" if table else self.database
            raise CatalogError(f"glue {operation} on {target} failed: {type(exc).__name__}") from exc

    def _create_database(self) -> None:
        try:
            self._call("get_database", "", Name=self.database)
        except self.glue.exceptions.EntityNotFoundException:
            try:
                self._call(
                    "create_database",
                    "",
                    DatabaseInput={"Name": self.database, "Description": "bronze layer (created by bronze-encounter)"},
                )
                log.info("catalog: glue database %s created", self.database)
            except self.glue.exceptions.AlreadyExistsException:
                pass  # created meanwhile: fine

    def _read(self, name: str) -> tuple[dict[str, Any] | None, set[tuple[str, ...]]]:
        try:
            stored = self._call("get_table", name, DatabaseName=self.database, Name=name)["Table"]
        except self.glue.exceptions.EntityNotFoundException:
            return None, set()
        partitions: set[tuple[str, ...]] = set()
        token = ""
        while True:
            page = self._call(
                "get_partitions",
                name,
                DatabaseName=self.database,
                TableName=name,
                ExcludeColumnSchema=True,
                **({"NextToken": token} if token else {}),
            )
            partitions |= {tuple(p["Values"]) for p in page.get("Partitions", [])}
            token = page.get("NextToken", "")
            if not token:
                return stored, partitions

    def _create(self, table_in: dict[str, Any]) -> None:
        try:
            self._call("create_table", table_in["Name"], DatabaseName=self.database, TableInput=table_in)
        except self.glue.exceptions.AlreadyExistsException:  # created meanwhile: make it ours
            self._update(table_in)

    def _update(self, table_in: dict[str, Any]) -> None:
        # Glue archives the previous definition as a table version (kept: a schema history; rare, never per commit).
        self._call("update_table", table_in["Name"], DatabaseName=self.database, TableInput=table_in)

    def _add_partitions(self, name: str, inputs: list[dict[str, Any]]) -> None:
        for start in range(0, len(inputs), MAX_PARTITIONS_PER_CALL):
            chunk = inputs[start : start + MAX_PARTITIONS_PER_CALL]
            answer = self._call(
                "batch_create_partition", name, DatabaseName=self.database, TableName=name, PartitionInputList=chunk
            )
            codes = {e.get("ErrorDetail", {}).get("ErrorCode", "") for e in answer.get("Errors", [])}
            if codes - {"AlreadyExistsException"}:  # already there (another run added it) is what we wanted
                raise CatalogError(
                    f"glue batch_create_partition on {self.database}.{name} failed: {', '.join(sorted(codes))}"
                )


class LocalCatalog(_KeptCatalog):
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
        text = _read_text(self.spark, self._uri(name))
        doc = json.loads(text) if text else {"TableInput": None, "Partitions": []}
        self._docs[name] = doc
        return doc["TableInput"], {tuple(p["Values"]) for p in doc["Partitions"]}

    def _save(self, name: str) -> None:
        _write_text(self.spark, self._uri(name), json.dumps(self._docs[name], indent=1, sort_keys=True) + "\n")

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


def open_catalog(config: JobConfig, spark: SparkSession) -> Catalog:
    """The configured catalog (`catalog.backend`)."""
    backend = config.catalog.backend
    if backend == "glue":
        from botocore.exceptions import NoRegionError

        try:
            return GlueCatalog(spark, config.tables.database, config.catalog.region)
        except NoRegionError as exc:
            raise ConfigError("catalog.region must be set (or AWS_REGION) for catalog.backend=glue") from exc
    if backend == "local":
        return LocalCatalog(spark, config.warehouse, config.tables.database)
    if backend == "none":
        return NoCatalog()
    raise ConfigError(f"unknown catalog.backend {backend!r} (glue, local or none)")


def ensure_catalog(spark: SparkSession, config: JobConfig) -> Catalog:
    """Open the configured catalog and register the three tables (job start); `none` derives nothing."""
    catalog = open_catalog(config, spark)
    if config.catalog.backend != "none":
        catalog.ensure(table_defs(spark, config))
    return catalog


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
    names = sorted(n for n in _list_names(spark, root) if n.endswith(".json"))
    if not names:
        return ()
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {_ident(database)}")
    registered = []
    for name in names:
        text = _read_text(spark, join_uri(root, name))
        table_in = json.loads(text)["TableInput"] if text else None
        if not table_in:
            continue
        location = table_in["StorageDescriptor"]["Location"]
        if not _exists(spark, join_uri(location, ".hoodie", "hoodie.properties")):
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


def list_partition_paths(spark: SparkSession, location: str, depth: int) -> list[str]:
    """Relative partition paths (`k=v[/k2=v2]`) under a table, listed through Spark's Hadoop file system.

    One listing per level (one S3 LIST with delimiter for a single partition key); Hudi's `.hoodie` and any
    folder that is not `key=value` are skipped. Works for local, s3a:// and s3:// (S3A) tables alike.
    """
    jvm = spark._jvm
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


def _exists(spark: SparkSession, uri: str) -> bool:
    if not is_remote(uri):
        return Path(local_path(uri)).exists()
    path = spark._jvm.org.apache.hadoop.fs.Path(uri)
    return bool(path.getFileSystem(spark._jsc.hadoopConfiguration()).exists(path))


def _read_text(spark: SparkSession, uri: str) -> str | None:
    if not is_remote(uri):
        path = Path(local_path(uri))
        return path.read_text(encoding="utf-8") if path.exists() else None
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(path):
        return None
    stream = fs.open(path)
    try:
        return str(jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()


def _write_text(spark: SparkSession, uri: str, text: str) -> None:
    data = text.encode("utf-8")
    if not is_remote(uri):
        path = Path(local_path(uri))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            with tmp.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)  # atomic: a reader sees the old or the new definition
        finally:
            tmp.unlink(missing_ok=True)
        return
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    out = path.getFileSystem(spark._jsc.hadoopConfiguration()).create(path, True)
    try:
        out.write(bytearray(data))
    finally:
        out.close()


def _list_names(spark: SparkSession, uri: str) -> list[str]:
    if not is_remote(uri):
        folder = Path(local_path(uri))
        return [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(path):
        return []
    return [s.getPath().getName() for s in fs.listStatus(path) if s.isFile()]


def readme_table(spark: SparkSession, config: JobConfig) -> str:
    """The README's table definitions: each table's catalog columns and partition keys, as registered."""
    lines = []
    for table in table_defs(spark, config):
        partitioned = ", ".join(f"`{k} {t}`" for k, t in table.partition_columns)
        lines.append(f"`{table.name}`" + (f", partitioned by {partitioned}" if partitioned else "") + ":")
        lines.append("")
        lines.append("| column | type |")
        lines.append("|---|---|")
        lines += [f"| `{name}` | `{hive}` |" for name, hive in table.columns]
        lines.append("")
    return "\n".join(lines).rstrip()


if __name__ == "__main__":
    from streaming import config as conf
    from streaming import readme
    from streaming.session import build_spark

    settings = conf.load(conf.env_file("local"))
    session = build_spark(settings.spark)
    readme.write("catalog", readme_table(session, settings))
    session.stop()
