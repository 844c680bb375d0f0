"""Encounter resources -> bronze rows, and the rows bronze and the quarantine write: DataFrame -> DataFrame (no I/O)."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from pyspark import SparkContext
from pyspark.sql import Column
from pyspark.sql import functions as F

from streaming.bronze.ordering import DELETED_PARTITION, EVENT_TIME_FLOOR, event_time, newest_versions, precombine_ts
from streaming.fhir import mapping
from streaming.fhir.mapping import (
    CLASS_LABELS,
    CLASS_R4_TYPE,
    CLASS_R5_TYPE,
    DERIVED,
    FHIR_DATETIME_RE,
    FHIR_ID_RE,
    PIPELINE_COLUMNS,
    READ_FIELDS,
    READ_SCHEMA,
    RULES,
    Rule,
    encounter_view,
    view_path,
)
from streaming.fhir.reasons import (  # record-level rejects
    BAD_DATETIME,
    FUTURE_DATETIME,
    INVALID_ID,
    MISSING_ID,
    SCHEMA_MISMATCH,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# hospital_partition(): a name is its own partition up to this many characters once URL-encoded; a derived name
# keeps this many characters of it.
PARTITION_NAME_MAX = 100
PARTITION_PREFIX_CHARS = 40
UNKNOWN_HOSPITAL_PARTITION = "__unknown__"
# The printable ASCII characters Hudi writes as %XX in a partition folder (hoodie.datasource.write.partitionpath
# .urlencode, PartitionPathEncodeUtils), and as a Java regex character class (each one backslash-escaped).
HUDI_ESCAPED_CHARS = "\"#%'*/:=?[\\]^{"
_HUDI_ESCAPED_CLASS = "[" + "".join("\\" + c for c in HUDI_ESCAPED_CHARS) + "]"

# from_json's corrupt-record column: Spark nulls an element whose JSON type does not fit the schema (the rest of
# the resource is kept), and fills this column with the text; that is how a wrong type is noticed at all.
_UNPARSED = "_bronze_unparsed"
_JSON_OPTIONS = {"columnNameOfCorruptRecord": _UNPARSED}

# The bronze table's columns, in order: the mapped ones, then what the pipeline adds (both documented in mapping).
BRONZE_COLUMNS: tuple[str, ...] = (*(rule.column for rule in RULES), *PIPELINE_COLUMNS)


def fhir_datetime(raw: Column) -> Column:
    """FHIR dateTime text -> UTC timestamp (session time zone is UTC); null when absent or not valid.

    Any offset is converted to UTC; a partial date (`2013`, `2013-03`, `2013-03-11`) is the start of that period;
    a date-time needs seconds and a zone. `try_to_timestamp` keeps an impossible date (`2013-02-30`) null even
    with spark.sql.ansi.enabled.
    """
    return F.when(
        raw.rlike(FHIR_DATETIME_RE),
        F.when(F.length(raw) == 4, F.try_to_timestamp(raw, F.lit("yyyy")))
        .when(F.length(raw) == 7, F.try_to_timestamp(raw, F.lit("yyyy-MM")))
        .when(F.length(raw) == 10, F.try_to_timestamp(raw, F.lit("yyyy-MM-dd")))
        .otherwise(F.try_to_timestamp(raw, F.lit("yyyy-MM-dd'T'HH:mm:ss[.SSSSSSSSS]XXX"))),
    )


def source_system(key_scope: str, source: str) -> Column:
    """The `source_system` column for a key scope (config.key_scope), over the parsed record's columns.

    `meta.source`: the resource's own, else its Bundle's (a DELETE has only the Bundle's); `folder`: the first
    folder under the landing prefix `source` in the file's URI. Empty when there is none (one shared scope),
    null under `id` (the id alone is the key).
    """
    if key_scope == "meta.source":
        own = F.when(F.col("kind") == "resource", F.col("meta.source"))
        return F.coalesce(own, F.col("bundle_source"), F.lit(""))
    if key_scope == "folder":
        # The URI's path after its scheme, then after the prefix's path: both spell the same bucket or folder.
        path = re.sub(r"^[A-Za-z0-9]+:/*", "", source).strip("/")
        pattern = r"^[A-Za-z0-9]+:/*" + re.escape(path) + r"/([^/]+)/"
        return F.regexp_extract(F.col("sourcename"), pattern, 1)
    return F.lit(None).cast("string")


def _class_label(code: Column) -> Column:
    labels = F.create_map(*[F.lit(x) for pair in CLASS_LABELS.items() for x in pair])
    return F.element_at(labels, code)


def _by_version(r4: Column, r5: Column) -> Column:
    return F.when(F.col("fhir_version") == "R5", r5).otherwise(r4)


def _view_steps() -> list[tuple[Column, ...]]:
    """Projections that add the `encounter` view's row for the row's FHIR version, as one struct column.

    Each version's view is compiled over the resource's elements as columns (`_r.*`, `class` parsed per version) to
    its row's column expressions (no array, no lambda but the view's own `where`), over names it binds first (its
    forEachOrNull item), each projected as a column and computed only for rows of that version.
    """
    bindings: list[Column] = []
    rows = {}
    for version in ("R4", "R5"):
        view = encounter_view(version)
        r5 = F.coalesce(F.col("fhir_version") == "R5", F.lit(False))
        mine = r5 if version == "R5" else ~r5
        bindings += [F.when(mine, F.expr(sql)).alias(name) for name, sql in view.bindings]
        rows[version] = F.struct(*view.row_columns())
    steps: list[tuple[Column, ...]] = [(F.col("*"), b) for b in bindings]  # a binding may read the one before it
    steps.append((F.col("*"), _by_version(rows["R4"], rows["R5"]).alias(mapping.VIEW_ROW)))
    return steps


def _version_path(rule: Rule) -> Column:
    """The element a (top-level) view column reads for the row's FHIR version, as text for messages."""
    r4, r5 = view_path(rule.source, "R4"), view_path(rule.source, "R5")
    return F.lit(r4) if r4 == r5 else _by_version(F.lit(r4), F.lit(r5))


def _normalise(rule: Rule, raw: Column) -> Column:
    if rule.kind == "reference":
        return F.coalesce(F.col("ref_map")[raw], raw)
    if rule.kind == "datetime":
        return fhir_datetime(raw)
    if rule.kind == "class_label":
        return _class_label(raw)
    if rule.kind == "text":
        return raw
    raise ValueError(f"unknown rule kind {rule.kind!r} for column {rule.column}")


def _wrong_types() -> Column:
    """Names of the read elements whose JSON type does not fit READ_FIELDS, comma separated; null when all fit.

    The whole-resource parse says whether anything failed; only then is each element parsed alone to name it.
    `class` is read as text, so its two possible shapes are checked on that text.
    """
    one_by_one = [
        F.when(
            F.from_json("resource_json", f"`{name}` {spark_type}, {_UNPARSED} string", _JSON_OPTIONS)[
                _UNPARSED
            ].isNotNull(),
            F.lit(f"Encounter.{name}"),
        )
        for name, spark_type in READ_FIELDS.items()
        if spark_type != "string"  # text takes any JSON value
    ]
    failed = F.concat_ws(", ", *one_by_one)
    elements = F.when(F.col(_UNPARSED).isNotNull(), F.when(failed != "", failed).otherwise(F.lit("Encounter")))

    wrapped = F.concat(F.lit('{"class":'), F.col("class"), F.lit("}"))

    def unfit(spark_type: str) -> Column:
        return F.from_json(wrapped, f"class {spark_type}, {_UNPARSED} string", _JSON_OPTIONS)[_UNPARSED].isNotNull()

    # An object never fits the R5 list nor a list the R4 Coding, so one parse per row decides (the first character
    # after JSON whitespace tells which); any other text, rare, is checked against both shapes.
    shape = F.regexp_extract(F.col("class"), r"^[ \t\n\r]*([\[{]?)", 1)
    bad_class = (
        F.when(shape == "{", unfit(CLASS_R4_TYPE))
        .when(shape == "[", unfit(CLASS_R5_TYPE))
        .otherwise(F.col("class").isNotNull() & unfit(CLASS_R4_TYPE) & unfit(CLASS_R5_TYPE))
    )
    names = F.concat_ws(", ", elements, F.when(bad_class, F.lit("Encounter.class")))
    return F.when(names != "", names)


def parse_resource() -> Column:
    """`resource_json` parsed into the elements the mapping reads (READ_SCHEMA), plus the corrupt-record column."""
    return F.from_json("resource_json", f"{READ_SCHEMA}, {_UNPARSED} string", _JSON_OPTIONS)


def hospital_partition(name: Column) -> Column:
    """The partition value for a hospital name: always one safe folder directly inside the table.

    - missing, empty or blank (whitespace only) -> `__unknown__`;
    - printable ASCII without leading or trailing space, not `.` or `..`, not starting with `__`, and at most
      PARTITION_NAME_MAX (100) characters once Hudi URL-encodes it (each of HUDI_ESCAPED_CHARS counts 3)
      -> the name itself;
    - anything else -> its first 40 characters with every character outside printable ASCII replaced by `_`
      (trimmed), then `~` and the first 16 hex digits of the SHA-256 of its UTF-8 bytes.

    Why (each measured with Hudi 1.0.2): Hudi URL-encodes `"#%'*/:=?[\\]^{` in the folder name but fails on
    some non-ASCII partition values (CJK); file systems cap a folder name at 255 bytes (100 `/` are 300 once
    encoded); a folder `hospital_partition=__HIVE_DEFAULT_PARTITION__` reads back as a null partition value, so
    `__`-names (also a literal `__unknown__`) are derived. `.`/`..` and edge spaces would be legal behind the
    `hospital_partition=` prefix but are kept out of folder names anyway. `hospital_name` always keeps the
    exact original text; two names may share a partition (the record key is global), a name never spans two.
    """
    escaped = F.length(name) - F.length(F.regexp_replace(name, _HUDI_ESCAPED_CLASS, ""))
    encoded_length = F.length(name) + 2 * escaped
    safe = (
        name.rlike("^[ -~]+$")
        & (name == F.trim(name))
        & ~name.isin(".", "..")
        & ~name.startswith("__")
        & (encoded_length <= PARTITION_NAME_MAX)
    )
    derived = F.concat(
        F.trim(F.regexp_replace(F.substring(name, 1, PARTITION_PREFIX_CHARS), "[^ -~]", "_")),
        F.lit("~"),
        F.substring(F.sha2(name, 256), 1, 16),
    )
    return (
        F.when(name.isNull() | name.rlike(r"(?U)^\s*$"), F.lit(UNKNOWN_HOSPITAL_PARTITION))
        .when(safe, name)
        .otherwise(derived)
    )


def bronze_rows(candidates: DataFrame, keys: Sequence[str] = ("encounter_id",)) -> DataFrame:
    """What the bronze upsert writes: one version per encounter (ordering.newest_versions), the bronze columns."""
    return newest_versions(candidates, keys).select(*BRONZE_COLUMNS, "_hoodie_is_deleted")


def quarantine_rows(rows: DataFrame, key: str, batch_id: int, at: datetime) -> DataFrame:
    """What the quarantine upsert writes for a batch's rejected rows (their meanings: columns.QUARANTINE)."""
    return rows.where("reject_reason IS NOT NULL").select(
        # Same file + position -> same key: a replayed batch replaces its quarantine rows instead of adding more.
        F.sha2(F.concat_ws("\u0000", "sourcename", "source_position"), 256).alias("quarantine_id"),
        "sourcename",
        "source_position",
        F.col("reject_reason").alias("reason"),
        F.col("reject_message").alias("message"),
        "raw_slice",
        F.lit(key).alias("batch_key"),
        F.lit(batch_id).cast("long").alias("batch_id"),
        F.lit(at).cast("timestamp").alias("quarantined_at"),
    )


def flatten(
    records: DataFrame,
    *,
    ingested_at: datetime,
    keep_resource_json: bool = True,
    raw_slice_chars: int = 2000,
    future_tolerance_hours: int = 24,
    key_scope: str = "id",
    source: str = "",
) -> DataFrame:
    """Map split records (see records.RECORD_SCHEMA) to bronze rows, one per record.

    `kind` says what each row is: `resource` (a bronze row, unless `reject_reason` is set), `delete` (a tombstone,
    `is_deleted` true), `quarantine` (rejected while reading the file) or `skipped` (another
    resource type). Rejected rows keep `reject_reason`, `reject_message` (names the element, never its value)
    and a `raw_slice` of at most `raw_slice_chars` characters. A version whose event time is more than
    `future_tolerance_hours` after the moment it is read is rejected (`future_datetime`). `key_scope` says what
    `source_system` holds (config.key_scope); `source`, the landing prefix, is where the `folder` scope starts.

    Filter its rows once they are cached (as the batch does): on the uncached plan Spark pushes a filter into every
    mapping expression, seconds to optimise and the mapping evaluated again per row (docs/decisions/test-costs.md).
    """
    context = SparkContext._active_spark_context
    steps = _projections(context, keep_resource_json, raw_slice_chars, future_tolerance_hours, key_scope, source)
    out = records
    for step in steps:
        out = out.select(*step)
    # The one per-batch value, put in its place among the final projection's columns.
    return out.withColumn("ingested_at", F.lit(ingested_at).cast("timestamp"))


# Building the projections below takes ~1,500 calls into the JVM: measured, flatten spent 0.46 s of each batch's
# driver time, 0.27 s with them reused. The columns are unresolved expressions, valid over any DataFrame of records,
# so they are built once per Spark context and setting; the context is in the key, a column lives in its JVM.
@functools.lru_cache(maxsize=8)
def _projections(
    context: object,
    keep_resource_json: bool,
    raw_slice_chars: int,
    future_tolerance_hours: int,
    key_scope: str,
    source: str,
) -> tuple[tuple[Column, ...], ...]:
    """flatten's projections, in order: each step's columns over the previous step's output."""
    future_message = (
        f"event time is more than {future_tolerance_hours} h after it was read (fhir.future_tolerance_hours)"
    )
    empty_map = F.create_map().cast("map<string,string>")
    steps: list[tuple[Column, ...]] = []
    steps.append(
        (
            F.col("kind"),
            F.col("sourcename"),
            F.col("position").alias("source_position"),
            F.col("resource_json"),
            F.col("resource_id"),
            F.coalesce("ref_map", empty_map).alias("ref_map"),
            F.coalesce("ref_names", empty_map).alias("ref_names"),
            F.col("file_modified"),
            F.col("ordinal").alias("source_ordinal"),
            fhir_datetime(F.col("bundle_last_updated")).alias("bundle_last_updated"),
            fhir_datetime(F.col("bundle_timestamp")).alias("bundle_timestamp"),
            fhir_datetime(F.col("entry_last_modified")).alias("entry_last_modified"),
            F.col("bundle_source"),
            F.col("reason").alias("read_reason"),
            F.col("message").alias("read_message"),
            F.col("raw_slice").alias("read_raw_slice"),
            parse_resource().alias("_r"),
        )
    )
    steps.append((F.col("*"), F.col("_r.*")))
    # Each helper may use the ones before it: one projection each.
    steps += [(F.col("*"), F.expr(expression).alias(name)) for name, expression in DERIVED.items()]
    # The view's row, computed once in its own projection; the rules below read its columns by name.
    steps += _view_steps()

    kind = F.col("kind")
    raw = {rule.column: F.col(f"{mapping.VIEW_ROW}.{rule.source}") for rule in RULES}
    values = {}
    for rule in RULES:
        value = _normalise(rule, raw[rule.column])
        values[rule.column] = F.coalesce(value, F.expr(rule.fallback)) if rule.fallback else value
    # A delete carries only the key (from the Bundle entry's request.url); its event time is its Bundle's.
    values["encounter_id"] = F.when(kind == "delete", F.col("resource_id")).otherwise(values["encounter_id"])
    times = [r for r in RULES if r.kind == "datetime"]
    # Each value and check once, in its own projection: the reject reason, message and slice below refer to them
    # by name instead of repeating (and re-compiling) the expressions.
    carried = (
        "kind", "sourcename", "source_position", "resource_json", "file_modified", "source_ordinal",
        "bundle_last_updated", "bundle_timestamp", "entry_last_modified", "read_reason", "read_message",
        "read_raw_slice", "fhir_version",
    )  # fmt: skip
    steps.append(
        (
            *[F.col(name) for name in carried],
            source_system(key_scope, source).alias("source_system"),
            *[values[rule.column].alias(rule.column) for rule in RULES],
            *[raw[r.column].alias(f"_raw_{r.column}") for r in times],
            (F.col("_r").isNull() | ~F.coalesce(F.col("resourceType") == "Encounter", F.lit(False))).alias(
                "_not_encounter"
            ),
            # parse.py sets resource_id only when `id` is a JSON string; from_json would turn a number into text.
            (F.col("id").isNotNull() & F.col("resource_id").isNull()).alias("_id_not_text"),
            _wrong_types().alias("_wrong_types"),
        )
    )
    # The time checks read the parsed times by name, in the next projection: written over `values`, the And below
    # would parse every time a second time (Spark does not share a subexpression under And's right side).
    bad_times = [
        F.when(F.col(f"_raw_{r.column}").isNotNull() & F.col(r.column).isNull(), _version_path(r)) for r in times
    ]
    steps.append(
        (
            F.col("*"),
            F.concat_ws(", ", *bad_times).alias("_bad_times"),
            # Earlier than any FHIR clock, and it would sort into the landing-time tier of precombine_ts.
            (F.col("last_updated") < F.lit(EVENT_TIME_FLOOR).cast("timestamp")).alias("_too_early"),
            event_time(
                F.col("last_updated"),
                F.col("entry_last_modified"),
                F.col("bundle_last_updated"),
                F.col("bundle_timestamp"),
            ).alias("event_time"),
        )
    )
    # Later than the moment it is read by more than the tolerance: a clock stamping local time as Z, a wrong year.
    # Trusted, it would pin the encounter and make Hudi discard every real update until then.
    in_future = F.col("event_time") > F.current_timestamp() + F.expr(f"INTERVAL {future_tolerance_hours} HOURS")

    encounter_id = F.col("encounter_id")
    no_id = encounter_id.isNull()
    bad_id = ~encounter_id.rlike(FHIR_ID_RE)
    not_encounter, id_not_text = F.col("_not_encounter"), F.col("_id_not_text")
    wrong_types, bad_times_found = F.col("_wrong_types"), F.col("_bad_times") != ""
    resource_reject = (
        F.when(not_encounter, F.lit(SCHEMA_MISMATCH))
        .when(no_id, F.lit(MISSING_ID))
        .when(id_not_text | bad_id, F.lit(INVALID_ID))
        .when(wrong_types.isNotNull(), F.lit(SCHEMA_MISMATCH))
        .when(bad_times_found | F.col("_too_early"), F.lit(BAD_DATETIME))
        .when(in_future, F.lit(FUTURE_DATETIME))
    )
    resource_message = (
        F.when(not_encounter, F.lit("resourceType is not Encounter"))
        .when(no_id, F.lit("Encounter.id is missing"))
        .when(id_not_text, F.lit("Encounter.id is not a JSON string"))
        .when(bad_id, F.lit("Encounter.id is not a FHIR id"))
        .when(wrong_types.isNotNull(), F.concat(F.lit("wrong JSON type: "), wrong_types))
        .when(bad_times_found, F.concat(F.lit("not a FHIR dateTime: "), F.col("_bad_times")))
        .when(F.col("_too_early"), F.lit("Encounter.meta.lastUpdated is before 1971"))
        .when(in_future, F.lit(future_message))
    )
    delete_reject = (
        F.when(no_id, F.lit(MISSING_ID)).when(bad_id, F.lit(INVALID_ID)).when(in_future, F.lit(FUTURE_DATETIME))
    )
    delete_message = (
        F.when(no_id, F.lit("DELETE entry has no Encounter id"))
        .when(bad_id, F.lit("DELETE entry's Encounter id is not a FHIR id"))
        .when(in_future, F.lit(future_message))
    )
    reject = (
        F.when(kind == "quarantine", F.col("read_reason"))
        .when(kind == "resource", resource_reject)
        .when(kind == "delete", delete_reject)
    )
    message = (
        F.when(kind == "quarantine", F.col("read_message"))
        .when(kind == "resource", resource_message)
        .when(kind == "delete", delete_message)
    )
    steps.append((F.col("*"), reject.alias("reject_reason"), message.alias("reject_message")))

    raw_slice = F.when(kind == "quarantine", F.substring("read_raw_slice", 1, raw_slice_chars)).when(
        kind == "resource", F.substring("resource_json", 1, raw_slice_chars)
    )
    steps.append(
        (
            *[F.col(rule.column) for rule in RULES],
            F.col("fhir_version"),
            F.col("sourcename"),
            F.col("source_position"),
            (F.col("resource_json") if keep_resource_json else F.lit(None).cast("string")).alias("resource_json"),
            precombine_ts(F.col("event_time"), F.col("file_modified")).alias("precombine_ts"),
            F.lit(None).cast("timestamp").alias("ingested_at"),  # flatten sets it per batch
            F.col("file_modified").alias("source_modified"),
            (kind == "delete").alias("is_deleted"),
            F.when(kind == "delete", F.lit(DELETED_PARTITION))
            .otherwise(hospital_partition(F.col("hospital_name")))
            .alias("hospital_partition"),
            F.col("source_system"),
            # A delete is a tombstone row (is_deleted), never a Hudi delete: the column stays (false) because tables
            # written before the tombstones have it, and Hudi refuses a write that drops a column.
            F.lit(False).alias("_hoodie_is_deleted"),
            F.col("source_ordinal"),
            F.col("event_time"),
            F.col("kind"),
            F.col("reject_reason"),
            F.col("reject_message"),
            F.when(F.col("reject_reason").isNotNull(), raw_slice).alias("raw_slice"),
        )
    )
    return tuple(steps)
