"""SQL over the bronze tables without a JVM: hudi-rs reads each table the SQL names as Arrow, DuckDB runs the SQL.

Tables are found by name under the warehouse (`<warehouse>/<name>`) and answer both as `bronze_encounter` and,
qualified with `tables.database`, as `bronze.bronze_encounter`, so an Athena query runs here as written. Only the
tables the SQL names are read, of those only the columns it can touch (see `columns_used`), and where the SQL
provably drops rows hudi-rs is asked to drop them first (see `pushdown_filters`): it prunes partitions and files,
and a file whose filter columns hold no matching row is not read further. Each table reaches DuckDB as an Arrow
stream read afresh on every scan, and the result leaves DuckDB batch by batch (`stream`), so memory follows the
batch, not the table; `query_format` turns the batches into text.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from streaming.config import ConfigError, JobConfig, is_remote, is_s3, s3_spelling
from streaming.fhir.mapping import RULES

if TYPE_CHECKING:
    import duckdb
    from hudi import HudiFileGroupReader, HudiFileSlice, HudiReadOptions, HudiTable

log = logging.getLogger(__name__)

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
# Rows per Arrow batch, from hudi-rs to DuckDB and from DuckDB to the output: what a query holds at a time.
BATCH_ROWS = 8192

Filter = tuple[str, str, str]  # (column, operator, value) as hudi-rs takes it


class QueryError(ConfigError):
    """The SQL could not run; the message is DuckDB's (or names the table that could not be read). Exit code 2."""


class TableUnreadable(QueryError):
    """A table exists under the warehouse but hudi-rs could not read it (storage, credentials, format)."""


def require_tables(config: JobConfig) -> None:
    """The warehouse must hold at least one of the tables: a mistyped path would otherwise answer "0 rows".

    A table not written yet inside a warehouse that holds another still reads as empty; SQL that names no table
    (`SELECT 1`) needs no warehouse at all.
    """
    uris = table_uris(config)
    if not any(_table_exists(uri) for uri in uris.values()):
        raise ConfigError(
            f"warehouse {config.warehouse} holds none of the tables ({', '.join(uris)}): check --warehouse (or"
            " --env/--stack); a job that has not written yet has no tables either"
        )


def table_uris(config: JobConfig) -> dict[str, str]:
    """The three tables by name -> where they live."""
    names = (config.tables.encounter, config.tables.ingest_log, config.tables.quarantine)
    return {name: config.table_uri(name) for name in names}


# A view's table (views.run): `bronze_<view name>` under the warehouse; found by name once the job has written it.
_VIEW_TABLE = re.compile(r"^bronze_[a-z][a-z0-9_]{0,100}$")


def view_table_uris(config: JobConfig, named: set[str]) -> dict[str, str]:
    """The views' tables the SQL names (`bronze_<view name>`) that exist under the warehouse, by name -> where."""
    found = {}
    for name in sorted(named):
        uri = config.table_uri(name)
        if _VIEW_TABLE.match(name) and name not in table_uris(config) and _table_exists(uri):
            found[name] = uri
    return found


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
        pa.field("source_system", pa.string()),
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
        pa.field("rows_stale", pa.int64()),
        pa.field("lag_seconds", pa.float64()),
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
    from streaming.adapters import aws

    if not hudi_uri(uri).startswith("s3://"):
        return {}
    env = os.environ
    options: dict[str, str] = {}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["aws_endpoint"] = endpoint
        if endpoint.startswith("http://"):  # a local stand-in (moto); object_store refuses http otherwise
            options["aws_allow_http"] = "true"
    if region := aws.resolve_region(environ=env):
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

    from streaming.adapters import aws
    from streaming.adapters.storage import split_s3_uri

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


@dataclass
class TableRead:
    """What hudi-rs was asked for one table and what it read: column names and counts only, never a value."""

    name: str
    columns: tuple[str, ...]
    filters: tuple[Filter, ...] = ()
    slices: int = 0  # file slices hudi-rs selected, after partition and file-statistics pruning (every scan)
    slices_read: int = 0  # of those, read for the query's columns (the rest held no row matching the filters)
    bytes_read: int = 0  # on-disk size of the slices read for the query's columns (an upper bound of bytes read)

    def describe(self) -> str:
        """One log line for --verbose: no filter values (they can be patient data)."""
        on = ", ".join(f"{column} {op}" for column, op, _ in self.filters) or "none"
        return (
            f"{self.name}: read {self.slices_read} of {self.slices} file slices ({self.bytes_read:,} bytes), "
            f"{len(self.columns)} columns, filters: {on}"
        )


class _HudiSource:
    """One table as DuckDB scans it: an Arrow stream that reads hudi-rs afresh on every scan, batch by batch.

    DuckDB asks for a new stream for each scan (a self-join, a CTE used twice), so a scan never finds the stream
    another one used up; and a stream reads nothing until DuckDB pulls its first batch.
    """

    def __init__(
        self, table: HudiTable, uri: str, read: TableRead, schema: pa.Schema, as_of: str | None = None
    ) -> None:
        self.table, self.uri, self.read, self.schema, self.as_of = table, uri, read, schema, as_of
        self.error: TableUnreadable | None = None  # what stopped a scan, for the message DuckDB wraps

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        reader = pa.RecordBatchReader.from_batches(self.schema, self._batches())
        return reader.__arrow_c_stream__(requested_schema)

    def _options(self, columns: list[str] | None = None, batch_rows: int | None = None) -> HudiReadOptions:
        from hudi import HudiReadOptions

        options = HudiReadOptions(filters=list(self.read.filters) or None, projection=columns)
        if self.as_of:
            options = options.with_as_of_timestamp(self.as_of)
        return options.with_batch_size(batch_rows) if batch_rows else options

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._read()
        except Exception as exc:  # hudi-rs raises one HudiCoreError for everything, and does not export its class
            self.error = TableUnreadable(f"table {self.read.name} at {self.uri} could not be read: {exc}")
            raise self.error from exc

    def _read(self) -> Iterator[pa.RecordBatch]:
        read = self.read
        slices = self.table.get_file_slices(self._options())  # partitions and files pruned by the filters
        files = self.table.create_file_group_reader_with_options(self._options())
        read.slices += len(slices)
        # Filter columns first where the query wants more: a file without a matching row is not read further.
        probe = sorted({column for column, _, _ in read.filters})
        probing = bool(probe) and not set(read.columns) <= set(probe)
        wanted = self._options(list(read.columns), BATCH_ROWS)
        for file_slice in slices:
            if probing and not self._any_match(files, file_slice, probe):
                continue
            read.slices_read += 1
            read.bytes_read += file_slice.total_size_bytes()
            for batch in files.read_file_slice_stream(file_slice, wanted):
                if batch.num_rows:
                    yield self._conform(batch)

    def _any_match(self, files: HudiFileGroupReader, file_slice: HudiFileSlice, columns: list[str]) -> bool:
        return any(batch.num_rows for batch in files.read_file_slice_stream(file_slice, self._options(columns)))

    def _conform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """A batch in the stream's schema: file groups written at different times may differ in nullability."""
        batch = batch.select(self.schema.names)
        return batch if batch.schema.equals(self.schema) else batch.cast(self.schema)


def _open(name: str, uri: str, empty: pa.Schema) -> tuple[HudiTable | None, pa.Schema]:
    """The table and its schema (meta fields first); None and `empty` when the job has not written it yet."""
    table = open_table(name, uri)
    if table is None:
        return None, empty
    try:
        return table, table.get_schema_with_meta_fields()
    except Exception as exc:  # HudiCoreError, see open_table
        raise TableUnreadable(f"table {name} at {uri} could not be read: {exc}") from exc


def _source(
    name: str,
    uri: str,
    opened: tuple[HudiTable | None, pa.Schema],
    columns: set[str] | None,
    filters: list[Filter],
    as_of: str | None,
) -> tuple[Any, TableRead]:
    """What DuckDB scans for one table: its hudi-rs stream, or an empty table with its columns when missing."""
    table, schema = opened
    wanted = [f.name for f in schema if columns is None or f.name.lower() in columns] or [ROW_COUNT_COLUMN]
    read = TableRead(name, tuple(wanted), tuple(filters) if table is not None else ())
    stream_schema = pa.schema([schema.field(n).with_nullable(True) for n in wanted])
    if table is None:
        return stream_schema.empty_table(), read
    return _HudiSource(table, uri, read, stream_schema, as_of), read


def columns_used(con: duckdb.DuckDBPyConnection, sql: str) -> set[str] | None:
    """Lower-case names of every column the SQL can touch, or None when it may need whole rows.

    From DuckDB's own parse tree: every name part of a column reference and of a `USING` list counts (a
    superset is only slower). Whole rows are needed for `*` (also `COLUMNS(...)`, `EXCLUDE`), NATURAL joins,
    PIVOT, a table or alias used as a value (`SELECT e FROM bronze_encounter e`), and statements other than
    SELECT (the parser tree is not available for them).
    """
    tree = _parse(con, sql)
    if tree is None:
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


# DuckDB's comparison node types -> hudi-rs operators; `swapped` is the operator with the constant on the left.
_COMPARISONS = {
    "COMPARE_EQUAL": ("=", "="),
    "COMPARE_NOTEQUAL": ("!=", "!="),
    "COMPARE_LESSTHAN": ("<", ">"),
    "COMPARE_GREATERTHAN": (">", "<"),
    "COMPARE_LESSTHANOREQUALTO": ("<=", ">="),
    "COMPARE_GREATERTHANOREQUALTO": (">=", "<="),
}
# Joins that pass a table's rows on unchanged, each matched on its own values: a WHERE conjunct on that table's
# columns that is false for NULL (every comparison here) then drops the same rows before the join as after it.
# ASOF and POSITIONAL pair rows by their neighbours or position, SEMI/ANTI by existence: never pushed through.
_JOIN_TYPES = {"INNER", "LEFT", "RIGHT", "FULL", "OUTER"}
_JOIN_REFS = {"REGULAR", "CROSS"}
# Literal types DuckDB casts to TIMESTAMPTZ, as it does when comparing them with a timestamp column.
_TIME_CASTS = {"TIMESTAMP", "TIMESTAMPTZ", "DATE"}


def pushdown_filters(
    con: duckdb.DuckDBPyConnection, sql: str, schemas: Mapping[str, pa.Schema]
) -> dict[str, list[Filter]]:
    """Filters hudi-rs may apply to each table (lower-case name -> its schema) without changing the SQL's result.

    From DuckDB's parse tree, only where provably safe: a WHERE conjunct comparing one of the table's string,
    integer or timestamp columns with a literal of that kind (=, <>, <, <=, >, >=, [NOT] IN, BETWEEN); the table
    named once in the statement, so its rows reach nothing but that WHERE; the WHERE's FROM is that table or plain
    joins around it (then the column must be qualified); no sampling, no table functions (`query_table` could
    read the table again unseen). DuckDB still runs the whole SQL, so a pushed filter only drops rows the SQL drops.
    Anything else (OR, functions, casts of columns, other literals) is simply not pushed.
    """
    tree = _parse(con, sql)
    if tree is None or len(tree.get("statements") or []) != 1:
        return {}
    nodes = list(_nodes(tree))
    if any(node.get("type") == "TABLE_FUNCTION" for node in nodes):
        return {}
    references: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        if node.get("type") == "BASE_TABLE":
            name = str(node.get("table_name") or "").lower()
            references.setdefault(name.removeprefix(_HIDDEN), []).append(node)
    found: dict[str, list[Filter]] = {}
    for node in nodes:
        if node.get("type") != "SELECT_NODE" or not node.get("where_clause") or node.get("sample"):
            continue
        for name, schema in schemas.items():
            for pushed in _select_filters(con, node, references.get(name, []), schema):
                if pushed not in found.setdefault(name, []):
                    found[name].append(pushed)
    return found


def _select_filters(
    con: duckdb.DuckDBPyConnection, node: dict[str, Any], refs: list[dict[str, Any]], schema: pa.Schema
) -> Iterator[Filter]:
    """The filters one SELECT's WHERE puts on a table named by `refs` (its references in the statement), if safe."""
    if len(refs) != 1 or refs[0].get("sample") or refs[0].get("at_clause") or refs[0].get("column_name_alias"):
        return
    place = _placement(node.get("from_table"), refs[0])
    if place is None:
        return
    qualifier = str(refs[0].get("alias") or refs[0].get("table_name")).lower()
    for conjunct in _conjuncts(node["where_clause"]):
        yield from _filters(con, conjunct, schema, qualifier, alone=place == "alone")


def _parse(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any] | None:
    """DuckDB's JSON parse tree of `sql`, or None when it has none (not a SELECT, or a syntax error)."""
    import duckdb

    try:
        # fetchall: DuckDB refuses other work (register) on a connection with a result not read to its end
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    except duckdb.Error:
        return None
    return None if tree.get("error") else tree


def _placement(from_table: Any, ref: dict[str, Any]) -> str | None:
    """ "alone" when `ref` is the whole FROM, "joined" when plain joins lead to it, else None."""
    if from_table is ref:
        return "alone"

    def reaches(node: Any) -> bool:
        if node is ref:
            return True
        if not isinstance(node, dict) or node.get("type") != "JOIN" or node.get("sample"):
            return False
        if node.get("join_type") not in _JOIN_TYPES or node.get("ref_type") not in _JOIN_REFS:
            return False
        return reaches(node.get("left")) or reaches(node.get("right"))

    return "joined" if reaches(from_table) else None


def _conjuncts(expression: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if expression.get("type") == "CONJUNCTION_AND":
        for child in expression.get("children") or []:
            yield from _conjuncts(child)
    else:
        yield expression


def _filters(
    con: duckdb.DuckDBPyConnection, expr: dict[str, Any], schema: pa.Schema, qualifier: str, *, alone: bool
) -> list[Filter]:
    """The hudi-rs filters one WHERE conjunct stands for on this table: none unless it is a plain comparison."""
    kind = expr.get("type")

    def column(node: Any) -> pa.Field | None:
        return _column(node, schema, qualifier, alone=alone)

    if kind in _COMPARISONS:
        return _comparison(con, expr, _COMPARISONS[kind], column)
    if kind == "COMPARE_BETWEEN":
        return _between(con, expr, column)
    negated = kind == "OPERATOR_NOT" and len(expr.get("children") or []) == 1
    inner = expr["children"][0] if negated else expr
    if inner.get("type") == "COMPARE_IN":
        return _in_list(con, inner, column, negated=negated)
    return []


def _column(node: Any, schema: pa.Schema, qualifier: str, *, alone: bool) -> pa.Field | None:
    """The table's column a COLUMN_REF names (qualified by `qualifier` unless the table is `alone`), else None."""
    if not isinstance(node, dict) or node.get("type") != "COLUMN_REF":
        return None
    names = [str(n).lower() for n in node.get("column_names") or []]
    if len(names) == 2 and names[0] == qualifier:
        names = names[1:]
    elif len(names) != 1 or not alone:  # joined: an unqualified name may be the other table's
        return None
    index = schema.get_field_index(names[0])  # -1 when absent or ambiguous
    return schema.field(index) if index >= 0 else None


def _comparison(
    con: duckdb.DuckDBPyConnection,
    expr: dict[str, Any],
    ops: tuple[str, str],
    column: Callable[[Any], pa.Field | None],
) -> list[Filter]:
    """`column op literal` (either way round; `ops` is the operator and its swapped form) as one filter."""
    left, right = expr.get("left"), expr.get("right")
    op, swapped = ops
    if column(right) is not None:
        left, right, op = right, left, swapped
    target = column(left)
    if target is None:
        return []
    value = _literal(con, right, target)
    return [] if value is None else [(target.name, op, value)]


def _between(
    con: duckdb.DuckDBPyConnection, expr: dict[str, Any], column: Callable[[Any], pa.Field | None]
) -> list[Filter]:
    """`column BETWEEN low AND high` as two filters, >= and <=."""
    target = column(expr.get("input"))
    if target is None:
        return []
    low, high = (_literal(con, expr.get(end), target) for end in ("lower", "upper"))
    return [] if low is None or high is None else [(target.name, ">=", low), (target.name, "<=", high)]


def _in_list(
    con: duckdb.DuckDBPyConnection,
    inner: dict[str, Any],
    column: Callable[[Any], pa.Field | None],
    *,
    negated: bool,
) -> list[Filter]:
    """`column [NOT] IN (literals)` as one filter, its values comma-joined the way hudi-rs splits them."""
    first, *rest = inner.get("children") or [None]
    target = column(first)
    values = [None if target is None else _literal(con, node, target) for node in rest]
    if target is None or not values or None in values:
        return []
    # hudi-rs splits an IN list at unescaped commas and trims each value: one that trimming changes stays out.
    if any(not v or v != v.strip() for v in values):
        return []
    escaped = ",".join(str(v).replace("\\", "\\\\").replace(",", "\\,") for v in values)
    return [(target.name, "NOT IN" if negated else "IN", escaped)]


def _literal(con: duckdb.DuckDBPyConnection, node: Any, target: pa.Field) -> str | None:
    """A literal as hudi-rs must spell it to mean what DuckDB compares the column with; None when unsure."""
    if not isinstance(node, dict):
        return None
    literal = node.get("literal") if node.get("type") == "VALUE_CONSTANT" else None
    kind, text = (literal or {}).get("kind"), (literal or {}).get("text")
    arrow = target.type
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return text if kind == "STRING" and isinstance(text, str) else None
    if pa.types.is_integer(arrow):
        if kind != "INTEGER":
            return None
        try:
            value = int(str(text))
        except ValueError:
            return None
        bits = arrow.bit_width
        low, high = (
            (0, 2**bits - 1) if pa.types.is_unsigned_integer(arrow) else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        )
        return str(value) if low <= value <= high else None
    if pa.types.is_timestamp(arrow) and arrow.unit == "us" and arrow.tz in ("UTC", "+00:00"):
        cast = "TIMESTAMPTZ"
        if node.get("type") == "OPERATOR_CAST" and not node.get("try_cast"):
            type_expr = node.get("type_expr") or {}
            cast = str(type_expr.get("type_name") or "").upper()
            if cast not in _TIME_CASTS or type_expr.get("children"):
                return None
            child = node.get("child") or {}
            literal = child.get("literal") if child.get("type") == "VALUE_CONSTANT" else None
            kind, text = (literal or {}).get("kind"), (literal or {}).get("text")
        if kind != "STRING" or not isinstance(text, str):
            return None
        return _instant(con, text, cast)
    return None


def _instant(con: duckdb.DuckDBPyConnection, text: str, cast: str) -> str | None:
    """A time literal as DuckDB reads it against a timestamp column (in UTC, to the microsecond), as RFC 3339."""
    import duckdb

    try:
        (micros,) = con.execute(f"SELECT epoch_us(CAST(CAST(? AS {cast}) AS TIMESTAMPTZ))", [text]).fetchall()[0]
    except duckdb.Error:
        return None  # DuckDB will say what is wrong with it when it runs the SQL
    if micros is None:
        return None
    try:
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros))
    except OverflowError:  # 'infinity' and times past year 9999
        return None
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class Result:
    """A query under way: its columns, then its rows as Arrow batches as DuckDB makes them (one pass)."""

    def __init__(self, schema: pa.Schema, batches: Iterator[pa.RecordBatch], reads: dict[str, TableRead]) -> None:
        self.schema = schema
        self.reads = reads  # what each table's scans asked of hudi-rs (counts grow as batches are read)
        self._batches = batches

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self._batches


@contextmanager
def stream(config: JobConfig, sql: str, *, as_of: str | None = None) -> Iterator[Result]:
    """Run `sql` (DuckDB dialect; the ready Athena queries run as written) and hand its rows over batch by batch.

    Raises QueryError with DuckDB's message when the SQL is wrong, or TableUnreadable (a QueryError) naming a
    table that exists but cannot be read, also while the batches are read. A table the job has not written yet
    reads as empty. `as_of` (see `as_of_instant`) reads every table as it was then. The batches are valid only
    inside the `with` block.
    """
    import duckdb

    named = _table_names(sql)
    uris = {**table_uris(config), **view_table_uris(config, named)}
    empty = table_schemas(config)
    if any(name.lower() in named for name in uris):
        require_tables(config)
    opened = {
        name: _open(name, uri, empty.get(name, pa.schema([]))) for name, uri in uris.items() if name.lower() in named
    }
    con = _connect()
    sources: dict[str, tuple[Any, TableRead]] = {}
    try:
        columns = columns_used(con, sql) if opened else None
        written = {name.lower(): schema for name, (table, schema) in opened.items() if table is not None}
        filters = pushdown_filters(con, sql, written) if written else {}
        sources = _register(con, config, uris, opened, columns, filters, as_of)
        try:
            relation = con.sql(sql)
        except duckdb.BinderException:
            if columns is None:
                raise
            # A column the parse tree did not show (should not happen): read whole tables rather than fail.
            sources = _register(con, config, uris, opened, None, filters, as_of)
            relation = con.sql(sql)
        reads = {name: read for name, (_, read) in sources.items()}
        if relation is None:  # a statement without a result (SET, CREATE ...)
            yield Result(pa.schema([]), iter(()), reads)
            return
        reader = relation.to_arrow_reader(BATCH_ROWS)
        yield Result(reader.schema, _batches(reader, sources), reads)
        for read in reads.values():
            log.debug("%s", read.describe())
    except duckdb.CatalogException as exc:
        known = ", ".join(uris)
        raise QueryError(f"{exc}\n(tables: {known}; also as {config.tables.database}.<table>)") from exc
    except duckdb.Error as exc:  # also a table's stream failing while DuckDB starts the query (an aggregate)
        raise _failure(exc, sources) from exc
    finally:
        con.close()


def _connect() -> duckdb.DuckDBPyConnection:
    """A DuckDB connection set up as every query runs: in UTC, as Athena (day arithmetic and rendering)."""
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    return con


def query_tables(tables: Mapping[str, pa.Table], sql: str, *, database: str = "bronze") -> pa.Table:
    """`sql` over Arrow tables held in memory (name -> rows), run as `query` runs it over the warehouse's tables.

    Each table answers as `<name>` and `<database>.<name>`, so a ready query runs as written. For rows that are no
    Hudi table (yet): a view's rows from `views run`, or a check of the ready SQL against known rows.
    """
    import duckdb

    con = _connect()
    try:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(database)}")
        for name, table in tables.items():
            hidden = f"{_HIDDEN}{name}"
            con.register(hidden, table)
            for schema in ("main", quote_identifier(database)):
                view = f"{schema}.{quote_identifier(name)}"
                con.execute(f"CREATE VIEW {view} AS SELECT * FROM {quote_identifier(hidden)}")
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    finally:
        con.close()


def _table_names(sql: str) -> set[str]:
    """Lower-case names of the tables `sql` names (DuckDB's list; the parse tree's where DuckDB cannot bind it)."""
    import duckdb

    try:
        return {n.lower() for n in duckdb.get_table_names(sql, qualified=False)}
    except duckdb.Error as exc:
        tree = None
        if isinstance(exc, duckdb.BinderException):  # get_table_names binds `JOIN ... USING (c)` and fails on it
            with duckdb.connect(":memory:") as con:
                tree = _parse(con, sql)
        if tree is None:
            raise QueryError(str(exc)) from exc
        return {str(n.get("table_name")).lower() for n in _nodes(tree) if n.get("type") == "BASE_TABLE"}


def query(config: JobConfig, sql: str, *, as_of: str | None = None) -> pa.Table:
    """The whole result of `sql` as one Arrow table (see `stream`, which this collects)."""
    with stream(config, sql, as_of=as_of) as result:
        return pa.Table.from_batches(list(result), schema=result.schema)


def _batches(reader: pa.RecordBatchReader, sources: dict[str, tuple[Any, TableRead]]) -> Iterator[pa.RecordBatch]:
    """DuckDB's result batches; a failure inside a table's stream is raised as that table's own error."""
    import duckdb

    try:
        yield from reader
    except (duckdb.Error, pa.ArrowException) as exc:
        raise _failure(exc, sources) from exc


def _failure(exc: Exception, sources: Mapping[str, tuple[Any, TableRead]]) -> QueryError:
    """The error to show for a failed query: a table's own when its stream failed (DuckDB wraps it), else DuckDB's."""
    for source, _ in sources.values():
        if isinstance(source, _HudiSource) and source.error is not None:
            return source.error
    return QueryError(str(exc))


_HIDDEN = "__hudi_"  # prefix of the streams behind the views; a SQL naming one counts as naming its table


def _register(
    con: duckdb.DuckDBPyConnection,
    config: JobConfig,
    uris: Mapping[str, str],
    opened: Mapping[str, tuple[HudiTable | None, pa.Schema]],
    columns: set[str] | None,
    filters: Mapping[str, list[Filter]],
    as_of: str | None,
) -> dict[str, tuple[Any, TableRead]]:
    """Make each table answer as `<name>` and `<database>.<name>`: views over its stream (nothing read yet)."""
    database = quote_identifier(config.tables.database)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {database}")
    sources = {}
    for name, table in opened.items():
        sources[name] = _source(name, uris[name], table, columns, filters.get(name.lower(), []), as_of)
        hidden = f"{_HIDDEN}{name}"
        con.register(hidden, sources[name][0])
        for schema in ("main", database):
            con.execute(
                f"CREATE OR REPLACE VIEW {schema}.{quote_identifier(name)} AS SELECT * FROM {quote_identifier(hidden)}"
            )
    return sources


def quote_identifier(identifier: str) -> str:
    """A name as a DuckDB (and Trino) quoted identifier."""
    return '"' + identifier.replace('"', '""') + '"'


_INSTANT = re.compile(r"\d{14}(\d{3})?")


def as_of_instant(text: str) -> str:
    """`--as-of` as hudi-rs reads it: a Hudi instant as given, an ISO 8601 time as RFC 3339 (UTC when naive)."""
    value = text.strip()
    if _INSTANT.fullmatch(value):
        try:
            datetime.strptime(value[:14], "%Y%m%d%H%M%S")
        except ValueError:
            raise QueryError(f"--as-of {text!r}: not a valid instant (yyyyMMddHHmmss[SSS])") from None
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(
            f"--as-of {text!r}: give a Hudi instant (yyyyMMddHHmmss[SSS]) or an ISO 8601 time (2024-03-01T12:00:00Z)"
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
