"""The views the job runs beside bronze_encounter: each a Hudi table `bronze_<view name>`, written in the same batch.

A view's rows come from the batch's split records of its resource type (records.py, cached once for all views):

- each resource version is checked as an Encounter is (an id that is a FHIR id, a valid `meta.lastUpdated` from
  1971, an event time not in the future); a rejected one goes to the quarantine table, its message naming the
  views it did not reach;
- one version per resource wins by the Encounters' ordering rule (ordering.py: event time, then landing time;
  a DELETE is a tombstone, one without a time deletes the version it finds), then the view runs over the winner;
- the key is the resource's id (`resource_key`, what getResourceKey() returns), plus `row_index` (the row's place
  in the resource's rows) when the view can give several rows per resource (it has a forEach, forEachOrNull,
  unionAll or repeat). A resource version that now gives fewer rows than its stored one (or none, a DELETE)
  turns the rows it no longer gives into tombstones, ordered as that version;
- a view may name one of its columns as its partition (extension `PARTITION_EXTENSION`); without it the table has
  one partition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from streaming.bronze.columns import TableDoc
from streaming.bronze.flatten import fhir_datetime, hospital_partition
from streaming.bronze.ordering import DELETED_PARTITION, EVENT_TIME_FLOOR, event_time, newest_versions, precombine_ts
from streaming.config import (
    ENCOUNTER_VIEW,
    VIEW_NAME,
    VIEW_TABLE_PREFIX,
    ConfigError,
    JobConfig,
    small_view_tables,
    view_entries,
)
from streaming.fhir.mapping import FHIR_ID_RE
from streaming.fhir.reasons import BAD_DATETIME, FUTURE_DATETIME, INVALID_ID, MISSING_ID
from streaming.lakehouse.hudi import TableSpec, encounter_table, small_table_index
from streaming.viewdef.compiler import CompiledView
from streaming.views.lookup import FoundView, find_view

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# A ViewDefinition extension naming the view column its table is partitioned by (valueString).
PARTITION_EXTENSION = "urn:bronze-encounter:view-partition"
TABLE_PREFIX = VIEW_TABLE_PREFIX
RESOURCE_KEY = "resource_key"
ROW_INDEX = "row_index"
# What the job adds to every view table's rows, after the view's own columns.
PIPELINE_COLUMNS: Mapping[str, str] = {
    "sourcename": "the file the version came from, as the stream listed it",
    "source_position": "where in that file (`line N`, `entry N`, `file`)",
    "precombine_ts": "the ordering value (ordering.py): the event time, else the landing time in the tier below",
    "source_modified": "the file's modification time (the landing time)",
    "ingested_at": "when the batch that wrote this version started",
    "is_deleted": "true: a tombstone (the resource was deleted, or its newest version no longer gives this row)",
}
_MANY_ROWS = ("forEach", "forEachOrNull", "unionAll", "repeat")


@dataclass(frozen=True)
class ViewTable:
    """One view the job runs and the Hudi table it lands in."""

    name: str
    view: CompiledView
    spec: TableSpec
    many: bool  # several rows per resource: the key includes row_index
    partition_column: str | None = None  # the view column the table is partitioned by
    # A newer version may give fewer rows than the stored one (several rows per resource, or a view `where`): the
    # stored rows are then read each batch, to turn the rows it lacks into tombstones.
    rows_vary: bool = True

    @property
    def resource(self) -> str:
        return self.view.resource

    @property
    def step(self) -> str:
        """The batch step that writes it: its timing's name and the fault harness's `after_view_<name>`."""
        return f"view_{self.name}"

    @property
    def keys(self) -> tuple[str, ...]:
        return (RESOURCE_KEY, ROW_INDEX) if self.many else (RESOURCE_KEY,)

    @property
    def partition(self) -> str:
        return f"{self.partition_column}_partition" if self.partition_column else ""


def load_views(config: JobConfig) -> tuple[ViewTable, ...]:
    """The views `views.run` names besides encounter, compiled; ConfigError names what is wrong with one."""
    tables: dict[str, ViewTable] = {}
    for entry in view_entries(config):
        table = view_table(config, find_view(entry, config.views.fhir_version))
        if table.name in tables:
            raise ConfigError(f"views.run: two views are named {table.name!r}")
        tables[table.name] = table
    return tuple(tables.values())


def view_table(config: JobConfig, found: FoundView) -> ViewTable:
    """The table a view lands in: its name, key and partition, checked against the pipeline's own columns."""
    view, definition = found.view, found.definition
    name = view.name or ""
    if not VIEW_NAME.match(name) or name == ENCOUNTER_VIEW:
        raise ConfigError(
            f"views.run: {found.origin}: the view's name must be lower-case letters, digits and '_' (not"
            f" {ENCOUNTER_VIEW}); it names the table {TABLE_PREFIX}<name>: got {view.name!r}"
        )
    columns = {c.name for c in view.columns}
    taken = columns & {RESOURCE_KEY, ROW_INDEX, *PIPELINE_COLUMNS}
    if taken:
        raise ConfigError(f"views.run: {found.origin}: column names the job adds itself: {sorted(taken)}")
    many = definition is None or _many_rows(definition)
    partition_column = _partition_column(definition or {}, columns, found.origin)
    table = f"{TABLE_PREFIX}{name}"
    if table in (config.tables.encounter, config.tables.ingest_log, config.tables.quarantine):
        raise ConfigError(f"views.run: {found.origin}: the view's table {table} is one of the job's own tables")
    bronze, small = encounter_table(config), small_view_tables(config)
    keys = (RESOURCE_KEY, ROW_INDEX) if many else (RESOURCE_KEY,)
    spec = TableSpec(
        name=table,
        uri=config.table_uri(table),
        record_key=",".join(keys),
        precombine="precombine_ts",
        partition=f"{partition_column}_partition" if partition_column else "",
        doc=_doc(view, found.origin, many, partition_column),
        # The same ordering payload and file sizing as bronze_encounter; its record index, or a small table's.
        options={**bronze.options, **(small_table_index(bool(partition_column)) if name in small else {})},
    )
    rows_vary = many or bool((definition or {}).get("where"))
    return ViewTable(name, view, spec, many, partition_column, rows_vary)


def _many_rows(definition: Any) -> bool:
    """Whether a view can give several rows per resource: any forEach, forEachOrNull, unionAll or repeat in it."""
    if isinstance(definition, Mapping):
        if any(key in definition for key in _MANY_ROWS):
            return True
        return any(_many_rows(v) for k, v in definition.items() if k in ("select", "column") or k in _MANY_ROWS)
    if isinstance(definition, list):
        return any(_many_rows(v) for v in definition)
    return False


def _partition_column(definition: Mapping[str, Any], columns: set[str], origin: str) -> str | None:
    extensions = definition.get("extension")
    for ext in extensions if isinstance(extensions, list) else []:
        if isinstance(ext, Mapping) and ext.get("url") == PARTITION_EXTENSION:
            column = ext.get("valueString")
            if column not in columns:
                raise ConfigError(f"views.run: {origin}: the partition column {column!r} is not a column of the view")
            return str(column)
    return None


def _doc(view: CompiledView, origin: str, many: bool, partition_column: str | None) -> TableDoc:
    rows = "one row per view row of each resource" if many else "one row per resource"
    where = f", partitioned by {partition_column}" if partition_column else ""
    meanings = {c.name: f"view column ({c.type})" for c in view.columns}
    meanings[RESOURCE_KEY] = f"the {view.resource}'s id (getResourceKey()): the record key"
    meanings[ROW_INDEX] = "the row's place among its resource's rows (0, 1, ...): part of the record key"
    if partition_column:
        meanings[f"{partition_column}_partition"] = f"the partition: {partition_column} as a safe folder name"
    return TableDoc(
        f"SQL on FHIR view {view.name} ({origin}) over {view.resource} ({view.fhir_version}), {rows}, its newest"
        f" version by event time; deleted or vanished rows are tombstones (is_deleted). Hudi copy-on-write{where}.",
        {**meanings, **PIPELINE_COLUMNS},
    )


def resource_types(views: Sequence[ViewTable]) -> frozenset[str]:
    """The resource types the split keeps as records: Encounter and every view's."""
    return frozenset({"Encounter", *(v.resource for v in views)})


def encounter_records(records: DataFrame, views: Sequence[ViewTable]) -> DataFrame:
    """The records the Encounter path flattens: all but the resources and deletes only the views read."""
    others = sorted(resource_types(views) - {"Encounter"})
    return records.where(~(F.col("kind").isin("resource", "delete") & F.col("resource_type").isin(others)))


# -- the versions of a batch's resources, checked and ordered -------------------------------------------------------


def checked_versions(records: DataFrame, types: Sequence[str], future_tolerance_hours: int) -> DataFrame:
    """The batch's versions of `types` (resources and deletes), each with its ordering and its reject reason, if any.

    The same checks and ordering as flatten's for Encounters, on what every resource has: id and meta.lastUpdated.
    """
    rows = records.where(F.col("kind").isin("resource", "delete") & F.col("resource_type").isin(list(types)))
    kind, raw_updated = F.col("kind"), F.get_json_object("resource_json", "$.meta.lastUpdated")
    rows = rows.select(
        "kind",
        "resource_type",
        "sourcename",
        F.col("position").alias("source_position"),
        "resource_json",
        "ref_map",
        F.col("resource_id").alias(RESOURCE_KEY),
        F.col("file_modified").alias("source_modified"),
        F.col("ordinal").alias("source_ordinal"),
        F.when(kind == "resource", F.get_json_object("resource_json", "$.id").isNull()).alias("_no_id"),
        F.when(kind == "resource", raw_updated).alias("_raw_updated"),
        F.when(kind == "resource", fhir_datetime(raw_updated)).alias("_updated"),
        fhir_datetime(F.col("entry_last_modified")).alias("_entry"),
        fhir_datetime(F.col("bundle_last_updated")).alias("_bundle_updated"),
        fhir_datetime(F.col("bundle_timestamp")).alias("_bundle_time"),
    )
    event = event_time(F.col("_updated"), F.col("_entry"), F.col("_bundle_updated"), F.col("_bundle_time"))
    rows = rows.withColumn("event_time", event)
    reason, message = _reject(future_tolerance_hours)
    return rows.select(
        *(c for c in rows.columns if not c.startswith("_")),
        precombine_ts(F.col("event_time"), F.col("source_modified")).alias("precombine_ts"),
        reason.alias("reject_reason"),
        message.alias("reject_message"),
    )


def _reject(future_tolerance_hours: int) -> tuple[Column, Column]:
    """A version's reject reason and message (naming the element, never its value); null for a good one."""
    key, rtype = F.col(RESOURCE_KEY), F.col("resource_type")
    future = F.col("event_time") > F.current_timestamp() + F.expr(f"INTERVAL {future_tolerance_hours} HOURS")
    bad_time = F.col("_raw_updated").isNotNull() & F.col("_updated").isNull()
    too_early = F.col("_updated") < F.lit(EVENT_TIME_FLOOR).cast("timestamp")
    cases: list[tuple[Column, str, Column]] = [
        (F.col("_no_id"), MISSING_ID, F.concat(rtype, F.lit(".id is missing"))),
        (key.isNull(), INVALID_ID, F.concat(rtype, F.lit(".id is not a JSON string"))),
        (~key.rlike(FHIR_ID_RE), INVALID_ID, F.concat(rtype, F.lit(".id is not a FHIR id"))),
        (bad_time, BAD_DATETIME, F.concat(F.lit("not a FHIR dateTime: "), rtype, F.lit(".meta.lastUpdated"))),
        (too_early, BAD_DATETIME, F.concat(rtype, F.lit(".meta.lastUpdated is before 1971"))),
        (
            future,
            FUTURE_DATETIME,
            F.lit(
                f"event time is more than {future_tolerance_hours} h after it was read (fhir.future_tolerance_hours)"
            ),
        ),
    ]
    reason = F.when(cases[0][0], F.lit(cases[0][1]))
    message = F.when(cases[0][0], cases[0][2])
    for condition, code, text in cases[1:]:
        reason, message = reason.when(condition, F.lit(code)), message.when(condition, text)
    return reason, message


def rejected(versions: DataFrame, views: Sequence[ViewTable], raw_slice_chars: int) -> DataFrame:
    """The rejected versions as flatten's rejected rows (what quarantine_rows reads); the message names the views."""
    named = F.create_map(*[F.lit(x) for t, names in _names_by_type(views).items() for x in (t, names)])
    message = F.concat(F.col("reject_message"), F.lit(" (not landed in "), named[F.col("resource_type")], F.lit(")"))
    # Encounter versions are checked (and quarantined) by the Encounter path itself.
    bad = versions.where(F.col("reject_reason").isNotNull() & (F.col("resource_type") != "Encounter"))
    return bad.select(
        "sourcename",
        "source_position",
        "reject_reason",
        message.alias("reject_message"),
        F.when(F.col("kind") == "resource", F.substring("resource_json", 1, raw_slice_chars)).alias("raw_slice"),
    )


def _names_by_type(views: Sequence[ViewTable]) -> dict[str, str]:
    names: dict[str, list[str]] = {}
    for v in views:
        names.setdefault(v.resource, []).append(v.spec.name)
    return {t: ", ".join(n) for t, n in names.items()}


@dataclass(frozen=True)
class ViewStats:
    """What one view's table got from a batch: its resource type's versions read, deletes, rejects; rows written."""

    versions: int = 0  # good resource versions of the view's type in the batch
    delete_requests: int = 0
    rejected: int = 0
    rows_written: int = 0  # rows the table's commit wrote (inserts and updates; tombstones included)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def type_counts(versions: DataFrame) -> dict[str, ViewStats]:
    """Per resource type: good versions, good deletes, rejects; one aggregation (it also fills the cache)."""
    good = F.col("reject_reason").isNull()
    rows = (
        versions.groupBy("resource_type")
        .agg(
            F.count(F.when(good & (F.col("kind") == "resource"), 1)).alias("versions"),
            F.count(F.when(good & (F.col("kind") == "delete"), 1)).alias("delete_requests"),
            F.count(F.when(~good, 1)).alias("rejected"),
        )
        .collect()
    )
    return {r["resource_type"]: ViewStats(r["versions"], r["delete_requests"], r["rejected"]) for r in rows}


# -- a view's rows ------------------------------------------------------------------------------------------------


def winners(versions: DataFrame, resource: str) -> DataFrame:
    """The good versions of `resource`, ready for ordering (newest_versions by resource_key)."""
    good = versions.where(F.col("reject_reason").isNull() & (F.col("resource_type") == resource))
    return good.drop("reject_reason", "reject_message")


def view_rows(table: ViewTable, newest: DataFrame, ingested_at: datetime) -> DataFrame:
    """The table's rows for the winning versions (one per resource): the view's rows, a tombstone per DELETE."""
    view = table.view
    carried = ("sourcename", "source_position", "precombine_ts", "source_modified")
    refs = F.coalesce(F.col("ref_map"), F.create_map().cast("map<string,string>"))
    parsed = newest.where(F.col("kind") == "resource").select(
        RESOURCE_KEY, *carried, view.parsed().alias(view.resource_column), refs.alias("ref_map")
    )
    live = _live_rows(view, parsed, carried).withColumn("is_deleted", F.lit(False))
    deleted = newest.where(F.col("kind") == "delete").select(
        RESOURCE_KEY,
        F.lit(0).alias(ROW_INDEX),
        *(F.lit(None).cast(c.spark_type).alias(c.name) for c in view.columns),
        *carried,
        F.lit(True).alias("is_deleted"),
    )
    return _finish(table, live.unionByName(deleted), ingested_at)


def _live_rows(view: CompiledView, parsed: DataFrame, carried: Sequence[str]) -> DataFrame:
    """The view's rows of each parsed resource: projected when the view gives one row per resource (its columns'
    SQL over its bindings: no array, no explode, Spark's generated code), else its array exploded."""
    if view.row_sql is None:
        exploded = parsed.select(RESOURCE_KEY, *carried, F.posexplode(F.expr(view.rows_sql)).alias(ROW_INDEX, "_row"))
        return exploded.select(
            RESOURCE_KEY, ROW_INDEX, *(F.col(f"_row.`{c.name}`").alias(c.name) for c in view.columns), *carried
        )
    bound = parsed.where(F.col(f"{view.resource_column}.resourceType") == view.resource)
    for name, sql in view.bindings:  # each may read the one before it
        bound = bound.select("*", F.expr(sql).alias(name))
    return bound.select(RESOURCE_KEY, F.lit(0).alias(ROW_INDEX), *view.row_columns(), *carried)


def vanished(
    table: ViewTable, newest: DataFrame, rows: DataFrame, stored: DataFrame, ingested_at: datetime
) -> DataFrame:
    """Tombstones for the stored rows of the batch's resources that their winning version no longer gives.

    Ordered as that version: Hudi keeps the stored row when the stored version is newer, as it keeps all its rows.
    """
    keys = list(table.keys)
    batch = newest.select(RESOURCE_KEY, "sourcename", "source_position", "precombine_ts", "source_modified")
    was = stored.where(~F.col("is_deleted")).select(*keys).join(F.broadcast(batch.select(RESOURCE_KEY)), RESOURCE_KEY)
    gone = was.join(rows.select(*keys), keys, "left_anti").join(batch, RESOURCE_KEY)
    if not table.many:
        gone = gone.withColumn(ROW_INDEX, F.lit(0))
    tombstones = gone.select(
        RESOURCE_KEY,
        ROW_INDEX,
        *(F.lit(None).cast(c.spark_type).alias(c.name) for c in table.view.columns),
        "sourcename",
        "source_position",
        "precombine_ts",
        "source_modified",
        F.lit(True).alias("is_deleted"),
    )
    return _finish(table, tombstones, ingested_at)


def _finish(table: ViewTable, rows: DataFrame, ingested_at: datetime) -> DataFrame:
    """The table's columns in order: key, view columns, pipeline columns, partition."""
    columns = [F.col(RESOURCE_KEY)]
    if table.many:
        columns.append(F.col(ROW_INDEX).cast("int"))
    columns += [F.col(c.name) for c in table.view.columns]
    columns += [
        F.col("sourcename"),
        F.col("source_position"),
        F.col("precombine_ts"),
        F.col("source_modified"),
        F.lit(ingested_at).cast("timestamp").alias("ingested_at"),
        F.col("is_deleted"),
    ]
    if table.partition_column:
        value = F.col(table.partition_column).cast("string")
        part = F.when(F.col("is_deleted"), F.lit(DELETED_PARTITION)).otherwise(hospital_partition(value))
        columns.append(part.alias(table.partition))
    return rows.select(*columns)


def stored_versions(stored: DataFrame) -> DataFrame:
    """(resource_key, precombine_ts) of each stored resource: the ordering of the version its rows are from.

    Every row a version writes (tombstones of the rows it no longer gives included) carries its ordering, and a
    version that loses writes nothing (not_older), so a resource's newest row ordering is its stored version's.
    """
    return stored.groupBy(RESOURCE_KEY).agg(F.max("precombine_ts").alias("precombine_ts"))


def not_older(newest: DataFrame, stored: DataFrame) -> DataFrame:
    """The winning versions the table takes: not older than the stored one (equal: the later batch wins, as Hudi).

    Hudi orders row by row, so an older version with more rows than the stored one would otherwise add rows.
    """
    known = stored.select(RESOURCE_KEY, F.col("precombine_ts").alias("_stored"))
    kept = newest.join(known, RESOURCE_KEY, "left").where(
        F.col("_stored").isNull() | (F.col("precombine_ts") >= F.col("_stored"))
    )
    return kept.select(*newest.columns)


def newest(candidates: DataFrame) -> DataFrame:
    """One version per resource by the ordering rule (ordering.newest_versions), deterministic."""
    return newest_versions(candidates, (RESOURCE_KEY,))


def empty_rows(table: ViewTable, spark: Any, ingested_at: datetime) -> DataFrame:
    """The table's rows over no records: its schema for the catalog, derived from the code that writes it."""
    from streaming.bronze.records import RECORD_SCHEMA

    versions = checked_versions(spark.createDataFrame([], RECORD_SCHEMA), [table.resource], 24)
    return view_rows(table, newest(winners(versions, table.resource)), ingested_at)
