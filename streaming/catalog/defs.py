"""Catalog table definitions as Hudi's Glue sync writes them: Spark schema -> Hive columns, TableInput, partitions.

No catalog calls here, only definitions: Hudi's five meta columns first, Hive types derived from the Spark schema
that is written, the partition column as a partition key only, Hudi's input format and the Parquet serde, and the
Spark datasource properties (`spark.sql.sources.*`) so Spark reads the tables through Hudi too. Beyond Hudi's sync,
each column carries its meaning as a comment and each table a description (`streaming.bronze.columns`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from streaming.bronze.columns import HUDI_META, INGEST_LOG_SCHEMA
from streaming.config import JobConfig, s3_spelling
from streaming.lakehouse import jars
from streaming.lakehouse.hudi import TableSpec, encounter_table, ingest_log_table, quarantine_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import DataType, StructType

# Hudi adds these to every table, in this order, before the data columns (its sync registers them the same way).
META_COLUMNS: tuple[str, ...] = tuple(HUDI_META)
# Copy-on-write snapshot reads, as Hudi's sync registers a COW table (HoodieInputFormatUtils, Parquet base files).
INPUT_FORMAT = "org.apache.hudi.hadoop.HoodieParquetInputFormat"
OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
# Hudi's hoodie.datasource.hive_sync.schema_string_length_thresh: the Spark schema JSON is cut into parts this long.
SCHEMA_PART_CHARS = 4000
# Athena v2/v3 table property Hudi's Glue sync writes; FALSE as Hudi's default (plain listing, no metadata table).
METADATA_LISTING = "hudi.metadata-listing-enabled"
CREATE_VERSION = "spark.sql.create.version"
# Glue's limits (Column.Comment, TableInput.Description); the local catalog holds the same text.
COMMENT_CHARS = 255
DESCRIPTION_CHARS = 2048
_ELLIPSIS = "..."
log = logging.getLogger(__name__)


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


def catalog_text(meaning: str, limit: int = COMMENT_CHARS) -> str:
    """A meaning as Glue takes it: one line, at most `limit` characters, cut at a clause end and marked when longer.

    Glue refuses a line break in a comment; a cut falls at the last `;`, `.` or `:` that keeps at least half the
    text, else at a comma, else at a space, and never inside a `code` span.
    """
    text = " ".join(meaning.split())
    if len(text) <= limit:
        return text
    room = text[: limit - len(_ELLIPSIS)]
    for ends in (("; ", ". ", ": "), (", ",), (" ",)):
        at = max(room.rfind(end) for end in ends)
        if at >= limit // 2:
            room = room[:at]
            break
    if room.count("`") % 2:  # an open code span would run into the ellipsis
        room = room[: room.rfind("`")]
    return room.rstrip(" ,;:.(") + _ELLIPSIS


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
    description: str = ""
    meanings: Mapping[str, str] = field(default_factory=dict)  # column -> meaning; Hudi's meta columns are known

    def comment(self, column: str) -> str:
        """The column's comment as registered: its meaning, cut to Glue's limit; empty when it has none."""
        return catalog_text(HUDI_META.get(column) or self.meanings.get(column, ""))

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
    """The catalog definition of a Hudi table written with `schema`, with the spec's description and meanings."""
    keys = (spec.partition,) if spec.partition else ()
    if spec.doc is None:
        return TableDef(spec.name, spec.uri, schema, keys)
    return TableDef(spec.name, spec.uri, schema, keys, spec.doc.description, spec.doc.meanings)


def table_defs(spark: SparkSession, config: JobConfig) -> tuple[TableDef, ...]:
    """The three tables with the schemas the batch writes, derived from the code on empty DataFrames (no data), or
    read back from the schema cache when the same code and settings derived them before."""
    bronze, ingest_log, quarantine = _cached_schemas(spark, config)
    return (
        table_def(encounter_table(config), bronze),
        table_def(ingest_log_table(config), ingest_log),
        table_def(quarantine_table(config), quarantine),
    )


def _derived_schemas(spark: SparkSession, config: JobConfig) -> tuple[StructType, StructType, StructType]:
    from streaming.bronze.flatten import bronze_rows, flatten, quarantine_rows  # pyspark: only when a schema is derived
    from streaming.bronze.records import RECORD_SCHEMA

    now = datetime.now(UTC)
    rows = flatten(spark.createDataFrame([], RECORD_SCHEMA), ingested_at=now, **_flatten_settings(config))
    bronze = bronze_rows(rows).schema  # the batch's own projection: nullability included
    quarantine = quarantine_rows(rows, "", 0, now).schema
    return bronze, spark.createDataFrame([], INGEST_LOG_SCHEMA).schema, quarantine


def _flatten_settings(config: JobConfig) -> dict[str, Any]:
    return {"keep_resource_json": config.fhir.keep_resource_json, "raw_slice_chars": config.fhir.raw_slice_chars}


_PACKAGE = Path(__file__).resolve().parents[1]


def schema_cache_file(config: JobConfig, package: Path = _PACKAGE) -> Path | None:
    """Where the derived schemas of this code and these settings are kept: named by a digest of every source file of
    the package, the pyspark version and the settings `flatten` is given. None when the package's files cannot be
    read one by one (a zipped package): no digest, no cache."""
    import pyspark

    digest = hashlib.sha256()
    sources = sorted(p for p in package.rglob("*") if p.suffix in (".py", ".json") and "__pycache__" not in p.parts)
    if not any(p.name == "flatten.py" for p in sources):
        return None
    for path in sources:
        digest.update(f"{path.relative_to(package).as_posix()}\0".encode())
        digest.update(path.read_bytes())
    digest.update(json.dumps([pyspark.__version__, _flatten_settings(config)], sort_keys=True).encode())
    return jars.cache_root() / "schemas" / f"{digest.hexdigest()[:32]}.json"


def _cached_schemas(spark: SparkSession, config: JobConfig) -> tuple[StructType, StructType, StructType]:
    """Deriving analyses the whole mapping on a cold JVM, ~2 s of every start; the same code and settings give the
    same schemas, so a start reads them back when they were derived before. A cache that cannot be read or
    written is only a slower start."""
    from pyspark.sql.types import StructType

    path = schema_cache_file(config)
    if path is None:
        return _derived_schemas(spark, config)
    try:
        bronze, ingest_log, quarantine = (StructType.fromJson(s) for s in json.loads(path.read_text()))
        return bronze, ingest_log, quarantine
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    schemas = _derived_schemas(spark, config)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps([s.jsonValue() for s in schemas]))
        partial.replace(path)  # whole or absent: a reader never sees half a file
    except OSError as exc:
        log.debug("schema cache not written (%s): the next start derives the schemas again", exc)
    return schemas


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


def _column(table: TableDef, name: str, kind: str) -> dict[str, str]:
    comment = table.comment(name)
    return {"Name": name, "Type": kind, **({"Comment": comment} if comment else {})}


def table_input(table: TableDef, spark_version: str) -> dict[str, Any]:
    """The Glue TableInput of a Hudi copy-on-write table as Hudi's Glue sync builds it, plus comments, description."""
    location = catalog_uri(table.location)
    description = catalog_text(table.description, DESCRIPTION_CHARS)
    return {
        "Name": table.name,
        **({"Description": description} if description else {}),
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"EXTERNAL": "TRUE", METADATA_LISTING: "FALSE", **spark_table_properties(table, spark_version)},
        "PartitionKeys": [_column(table, name, kind) for name, kind in table.partition_columns],
        "StorageDescriptor": {
            "Columns": [_column(table, name, kind) for name, kind in table.columns],
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
    # Comments stay on the table: a call of 100 partitions would otherwise carry them 100 times.
    sd["Columns"] = [{k: v for k, v in column.items() if k != "Comment"} for column in sd.get("Columns", [])]
    return {"Values": list(values), "StorageDescriptor": sd}


def _columns(items: Iterable[Mapping[str, Any]] | None) -> list[tuple[str, str, str]]:
    return [(str(c["Name"]), str(c["Type"]).lower(), str(c.get("Comment") or "")) for c in items or ()]


def definition_differs(stored: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether the stored table lacks anything of the desired definition (extra parameters of others are fine).

    A column comment or the description that differs is a change (ours: made from the code's meanings, so a new
    meaning updates the table once); a description, when we have none, and an owner set by others are not.
    """
    s_sd, d_sd = stored.get("StorageDescriptor") or {}, desired["StorageDescriptor"]
    if "Description" in desired and stored.get("Description") != desired["Description"]:
        return True
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


def merged_definition(stored: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The TableInput for an UpdateTable: ours, keeping parameters, owner (and, when we have none, description)."""
    params = {**(stored.get("Parameters") or {}), **desired["Parameters"]}
    if CREATE_VERSION in (stored.get("Parameters") or {}):
        params[CREATE_VERSION] = stored["Parameters"][CREATE_VERSION]
    kept = {k: stored[k] for k in ("Description", "Owner") if k in stored}
    return {**kept, **desired, "Parameters": params}
