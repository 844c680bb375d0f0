"""SQL over the bronze tables without a JVM: hudi-rs reads each table the SQL names as Arrow, DuckDB runs the SQL.

Tables are found by name under the warehouse (`<warehouse>/<name>`) and answer both as `bronze_encounter` and,
qualified with `tables.database`, as `bronze.bronze_encounter`, so an Athena query runs here as written. Only the
tables the SQL names are read, and of those only the columns it can touch (see `columns_used`). The result is
Arrow; `query_format` turns it into text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from streaming.config import JobConfig, is_remote, is_s3, s3_spelling
from streaming.mapping import RULES

if TYPE_CHECKING:
    import duckdb
    from hudi import HudiTable

# Hudi's meta fields, first in every table as hudi-rs reads it.
META_FIELDS = (
    "_hoodie_commit_time",
    "_hoodie_commit_seqno",
    "_hoodie_record_key",
    "_hoodie_partition_path",
    "_hoodie_file_name",
)
# Read when a query names a table but none of its columns (`SELECT count(*) ...`): small, always there.
ROW_COUNT_COLUMN = "_hoodie_record_key"
_TIMESTAMP = pa.timestamp("us", tz="UTC")


class QueryError(RuntimeError):
    """The SQL could not run; the message is DuckDB's (or names the table that could not be read)."""


class TableUnreadable(QueryError):
    """A table exists under the warehouse but hudi-rs could not read it (storage, credentials, format)."""


def table_uris(config: JobConfig) -> dict[str, str]:
    """The three tables by name -> where they live."""
    names = (config.tables.encounter, config.tables.ingest_log, config.tables.quarantine)
    return {name: config.table_uri(name) for name in names}


def table_schemas(config: JobConfig) -> dict[str, pa.Schema]:
    """The schema hudi-rs reads for each table (meta fields first), used for a table that does not exist yet.

    Written out here because the writers' schemas live in Spark code this module must not import; a test
    compares them with real tables.
    """
    meta = [pa.field(name, pa.string()) for name in META_FIELDS]
    string_columns = ("fhir_version", "sourcename", "source_position", "resource_json")
    bronze = [
        *meta,
        *(pa.field(rule.column, _TIMESTAMP if rule.kind == "datetime" else pa.string()) for rule in RULES),
        *(pa.field(name, pa.string()) for name in string_columns),
        pa.field("precombine_ts", _TIMESTAMP),
        pa.field("ingested_at", _TIMESTAMP),
        pa.field("source_modified", _TIMESTAMP),
        pa.field("is_deleted", pa.bool_()),
        pa.field("hospital_partition", pa.string()),
        pa.field("_hoodie_is_deleted", pa.bool_()),
    ]
    counts = ("rows_in", "rows_written", "rows_deleted", "rows_rejected", "rows_skipped")
    ingest_log = [
        *meta,
        pa.field("batch_key", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("batch_id", pa.int64()),
        pa.field("files", pa.list_(pa.field("element", pa.string()))),
        pa.field("file_count", pa.int32()),
        pa.field("files_already_committed", pa.int32()),
        *(pa.field(name, pa.int64()) for name in counts),
        pa.field("started_at", _TIMESTAMP),
        pa.field("ended_at", _TIMESTAMP),
        pa.field("commit_instant", pa.string()),
        pa.field("delete_requests", pa.int64()),
    ]
    text = ("quarantine_id", "sourcename", "source_position", "reason", "message", "raw_slice", "batch_key")
    quarantine = [
        *meta,
        *(pa.field(name, pa.string()) for name in text),
        pa.field("batch_id", pa.int64()),
        pa.field("quarantined_at", _TIMESTAMP),
    ]
    return {
        config.tables.encounter: pa.schema(bronze),
        config.tables.ingest_log: pa.schema(ingest_log),
        config.tables.quarantine: pa.schema(quarantine),
    }


def hudi_uri(uri: str) -> str:
    """The table URI as hudi-rs wants it: `s3://` for S3A spellings, a plain path for `file:` URIs."""
    if is_s3(uri):
        return s3_spelling(uri)
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if uri.startswith("file:"):
        return uri[len("file:") :]
    return uri


def storage_options(uri: str) -> dict[str, str]:
    """hudi-rs (object_store) options for an S3 table from the environment boto3 also reads; none for local."""
    if not hudi_uri(uri).startswith("s3://"):
        return {}
    env = os.environ
    options: dict[str, str] = {}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["aws_endpoint"] = endpoint
        if endpoint.startswith("http://"):  # a local stand-in (moto); object_store refuses http otherwise
            options["aws_allow_http"] = "true"
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        options["aws_region"] = region
    for var, key in (
        ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
        ("AWS_SESSION_TOKEN", "aws_session_token"),
    ):
        if env.get(var):
            options[key] = env[var]
    return options


def open_table(name: str, uri: str) -> HudiTable | None:
    """The Hudi table at `uri`, or None when there is no table there yet (the job has not written it)."""
    from hudi import HudiTableBuilder

    try:
        return HudiTableBuilder.from_base_uri(hudi_uri(uri)).with_storage_options(storage_options(uri)).build()
    except Exception as exc:  # hudi-rs raises one HudiCoreError for everything, and does not export its class
        if not _table_exists(uri):
            return None
        raise TableUnreadable(f"table {name} at {uri} could not be read: {exc}") from exc


def _table_exists(uri: str) -> bool:
    """Whether `uri` holds a Hudi table (its `.hoodie/hoodie.properties`), asked of the store directly.

    True also when the store cannot tell (no permission, unreachable): then hudi-rs's own error is the one to show.
    """
    if not is_remote(uri):
        return (Path(hudi_uri(uri)) / ".hoodie" / "hoodie.properties").exists()
    from botocore.exceptions import BotoCoreError, ClientError

    from streaming import aws
    from streaming.storage import split_s3_uri

    bucket, key = split_s3_uri(uri)
    try:
        aws.client("s3").head_object(Bucket=bucket, Key=f"{key.rstrip('/')}/.hoodie/hoodie.properties")
    except ClientError as exc:
        return str(exc.response.get("Error", {}).get("Code", "")) not in (
            "404",
            "NoSuchKey",
            "NotFound",
            "NoSuchBucket",
        )
    except BotoCoreError:
        return True
    return True


def read_table(name: str, uri: str, columns: set[str] | None, empty: pa.Schema) -> pa.Table:
    """Snapshot of one table as Arrow: only `columns` (lower-case names; None: all); `empty`'s when it is missing."""
    from hudi import HudiReadOptions

    table = open_table(name, uri)
    schema = empty if table is None else table.get_schema_with_meta_fields()
    wanted = [f.name for f in schema if columns is None or f.name.lower() in columns] or [ROW_COUNT_COLUMN]
    if table is None:
        return empty.empty_table().select(wanted)
    options = HudiReadOptions(projection=wanted) if len(wanted) < len(schema) else None
    try:
        batches = table.read(options)
    except Exception as exc:  # HudiCoreError, see open_table
        raise TableUnreadable(f"table {name} at {uri} could not be read: {exc}") from exc
    if not batches:
        return schema.empty_table().select(wanted)
    try:
        return pa.Table.from_batches(batches)
    except pa.ArrowInvalid:  # file groups written at different times may differ in nullability
        return pa.concat_tables([pa.Table.from_batches([b]) for b in batches], promote_options="permissive")


def columns_used(con: duckdb.DuckDBPyConnection, sql: str) -> set[str] | None:
    """Lower-case names of every column the SQL can touch, or None when it may need whole rows.

    From DuckDB's own parse tree: every name part of a column reference and of a `USING` list counts (a
    superset is only slower). Whole rows are needed for `*` (also `COLUMNS(...)`, `EXCLUDE`), NATURAL joins,
    PIVOT, a table or alias used as a value (`SELECT e FROM bronze_encounter e`), and statements other than
    SELECT (the parser tree is not available for them).
    """
    import duckdb

    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    except duckdb.Error:
        return None
    if tree.get("error"):
        return None
    used: set[str] = set()
    relations: set[str] = set()
    single: set[str] = set()
    for node in _nodes(tree):
        kind = node.get("type")
        if kind == "STAR" or node.get("class") == "STAR" or kind == "PIVOT" or node.get("ref_type") == "NATURAL":
            return None
        if kind == "COLUMN_REF":
            names = [str(n).lower() for n in node.get("column_names") or []]
            used.update(names)
            if len(names) == 1:
                single.update(names)
        elif kind == "BASE_TABLE":
            relations.update(str(node.get(k) or "").lower() for k in ("table_name", "alias"))
        used.update(str(n).lower() for n in node.get("using_columns") or [])
    if single & relations:
        return None
    return used


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    """Every object in a JSON parse tree, depth first."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def query(config: JobConfig, sql: str) -> pa.Table:
    """Run `sql` (DuckDB dialect; the README's Athena queries run as written) over the tables it names.

    Raises QueryError with DuckDB's message when the SQL is wrong, or TableUnreadable (a QueryError) naming a
    table that exists but cannot be read. A table the job has not written yet reads as empty.
    """
    import duckdb

    uris = table_uris(config)
    try:
        named = {n.lower() for n in duckdb.get_table_names(sql, qualified=False)}
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    wanted = [name for name in uris if name.lower() in named]
    schemas = table_schemas(config)
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")  # as Athena: day arithmetic and rendering in UTC
        columns = columns_used(con, sql) if wanted else None
        _register(con, config, {n: read_table(n, uris[n], columns, schemas[n]) for n in wanted})
        try:
            return _run(con, sql)
        except duckdb.BinderException:
            if columns is None:
                raise
            # A column the parse tree did not show (should not happen): read whole tables rather than fail.
            _register(con, config, {n: read_table(n, uris[n], None, schemas[n]) for n in wanted})
            return _run(con, sql)
    except duckdb.CatalogException as exc:
        known = ", ".join(uris)
        raise QueryError(f"{exc}\n(tables: {known}; also as {config.tables.database}.<table>)") from exc
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    finally:
        con.close()


def _register(con: duckdb.DuckDBPyConnection, config: JobConfig, tables: dict[str, pa.Table]) -> None:
    """Make each Arrow table answer as `<name>` and `<database>.<name>` (views over it, no copy)."""
    database = quote_identifier(config.tables.database)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {database}")
    for name, table in tables.items():
        hidden = f"__arrow_{name}"
        con.register(hidden, table)
        for schema in ("main", database):
            con.execute(
                f"CREATE OR REPLACE VIEW {schema}.{quote_identifier(name)} AS SELECT * FROM {quote_identifier(hidden)}"
            )


def _run(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    relation = con.sql(sql)
    return pa.table({}) if relation is None else relation.to_arrow_table()


def quote_identifier(identifier: str) -> str:
    """A name as a DuckDB (and Trino) quoted identifier."""
    return '"' + identifier.replace('"', '""') + '"'
