"""Encounter resources -> bronze rows: a pure DataFrame -> DataFrame function (no I/O), Spark SQL only."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pyspark.sql import Column
from pyspark.sql import functions as F

from streaming.mapping import CLASS_LABELS, DERIVED, FHIR_DATETIME_RE, FHIR_ID_RE, READ_SCHEMA, RULES, Rule

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# Reason codes of record-level rejects (file-level ones live in parse.py).
MISSING_ID = "missing_id"
INVALID_ID = "invalid_id"
BAD_DATETIME = "bad_datetime"
SCHEMA_MISMATCH = "schema_mismatch"

# Printable ASCII names up to this length are their own partition; others get a safe derived name.
PARTITION_NAME_MAX = 100
UNKNOWN_HOSPITAL_PARTITION = "__unknown__"

# The bronze table's columns, in order: the mapped ones, then what the pipeline adds.
BRONZE_COLUMNS: tuple[str, ...] = (
    *(rule.column for rule in RULES),
    "fhir_version",
    "sourcename",
    "source_position",
    "resource_json",
    "precombine_ts",
    "ingested_at",
    "hospital_partition",
)


def fhir_datetime(raw: Column) -> Column:
    """FHIR dateTime text -> UTC timestamp (session time zone is UTC); null when absent or not valid."""
    return F.when(
        raw.rlike(FHIR_DATETIME_RE),
        F.when(F.length(raw) == 4, F.to_timestamp(raw, "yyyy"))
        .when(F.length(raw) == 7, F.to_timestamp(raw, "yyyy-MM"))
        .when(F.length(raw) == 10, F.to_timestamp(raw, "yyyy-MM-dd"))
        .otherwise(F.to_timestamp(raw, "yyyy-MM-dd'T'HH:mm:ss[.SSSSSSSSS]XXX")),
    )


def _class_label(code: Column) -> Column:
    labels = F.create_map(*[F.lit(x) for pair in CLASS_LABELS.items() for x in pair])
    return F.element_at(labels, code)


def _version_value(rule: Rule) -> Column:
    """The rule's raw value for the row's FHIR version, before normalisation."""
    if rule.r4 == rule.r5:
        return F.expr(rule.r4)
    return F.when(F.col("fhir_version") == "R5", F.expr(rule.r5)).otherwise(F.expr(rule.r4))


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


def hospital_partition(name: Column) -> Column:
    """A partition value that is always one safe folder: the name itself when it is short printable ASCII.

    Hudi 1.0.2 URL-encodes `/ = %` but fails on some non-ASCII partition values, and file systems cap a
    folder name at 255 bytes; such names get an ASCII prefix plus a hash, and a missing name `__unknown__`.
    `hospital_name` always keeps the exact original text.
    """
    safe = name.rlike(f"^[ -~]{{1,{PARTITION_NAME_MAX}}}$") & ~name.isin(".", "..")
    derived = F.concat(
        F.regexp_replace(F.substring(name, 1, 40), "[^ -~]", "_"),
        F.lit("~"),
        F.substring(F.sha2(name, 256), 1, 16),
    )
    return (
        F.when(name.isNull() | (F.trim(name) == ""), F.lit(UNKNOWN_HOSPITAL_PARTITION))
        .when(safe, name)
        .otherwise(derived)
    )


def flatten(
    records: DataFrame, *, ingested_at: datetime, keep_resource_json: bool = True, raw_slice_chars: int = 2000
) -> DataFrame:
    """Map split records (see records.RECORD_SCHEMA) to bronze rows, one per record.

    `kind` says what each row is: `resource` (a bronze row, unless `reject_reason` is set), `delete` (a key to
    remove, `_hoodie_is_deleted` true), `quarantine` (rejected while reading the file) or `skipped` (another
    resource type). Rejected rows keep `reject_reason`, `reject_message` and a bounded `raw_slice`.
    """
    empty_map = F.create_map().cast("map<string,string>")
    parsed = records.select(
        "kind",
        "sourcename",
        F.col("position").alias("source_position"),
        "resource_json",
        "resource_id",
        F.coalesce("ref_map", empty_map).alias("ref_map"),
        F.coalesce("ref_names", empty_map).alias("ref_names"),
        "file_modified",
        F.col("reason").alias("read_reason"),
        F.col("message").alias("read_message"),
        F.col("raw_slice").alias("read_raw_slice"),
        F.from_json("resource_json", READ_SCHEMA).alias("_r"),
    ).select("*", "_r.*")
    for name, expression in DERIVED.items():
        parsed = parsed.withColumn(name, F.expr(expression))

    kind = F.col("kind")
    raw = {rule.column: _version_value(rule) for rule in RULES}
    values = {}
    for rule in RULES:
        value = _normalise(rule, raw[rule.column])
        values[rule.column] = F.coalesce(value, F.expr(rule.fallback)) if rule.fallback else value
    # A delete carries only the key (from the Bundle entry's request.url); its ordering is the file's time.
    values["encounter_id"] = F.when(kind == "delete", F.col("resource_id")).otherwise(values["encounter_id"])

    bad_times = [
        F.when(raw[r.column].isNotNull() & values[r.column].isNull(), F.lit(r.column))
        for r in RULES
        if r.kind == "datetime"
    ]
    encounter_id = values["encounter_id"]
    resource_reject = (
        F.when(F.col("_r").isNull() | (F.col("resourceType") != "Encounter"), F.lit(SCHEMA_MISMATCH))
        .when(encounter_id.isNull(), F.lit(MISSING_ID))
        .when(~encounter_id.rlike(FHIR_ID_RE), F.lit(INVALID_ID))
        .when(F.concat_ws(",", *bad_times) != "", F.lit(BAD_DATETIME))
    )
    resource_message = (
        F.when(resource_reject == SCHEMA_MISMATCH, F.lit("Encounter does not match the FHIR structure read"))
        .when(resource_reject == MISSING_ID, F.lit("Encounter has no id"))
        .when(resource_reject == INVALID_ID, F.lit("Encounter.id is not a FHIR id"))
        .when(resource_reject == BAD_DATETIME, F.concat(F.lit("not a FHIR dateTime: "), F.concat_ws(", ", *bad_times)))
    )
    reject = F.when(kind == "quarantine", F.col("read_reason")).when(kind == "resource", resource_reject)
    message = F.when(kind == "quarantine", F.col("read_message")).when(kind == "resource", resource_message)
    raw_slice = F.when(kind == "quarantine", F.col("read_raw_slice")).when(
        kind == "resource", F.substring("resource_json", 1, raw_slice_chars)
    )

    precombine = F.coalesce(values["last_updated"], F.col("file_modified"))
    return parsed.select(
        *[values[rule.column].alias(rule.column) for rule in RULES],
        "fhir_version",
        "sourcename",
        "source_position",
        (F.col("resource_json") if keep_resource_json else F.lit(None).cast("string")).alias("resource_json"),
        precombine.alias("precombine_ts"),
        F.lit(ingested_at).cast("timestamp").alias("ingested_at"),
        hospital_partition(values["hospital_name"]).alias("hospital_partition"),
        (kind == "delete").alias("_hoodie_is_deleted"),
        "kind",
        reject.alias("reject_reason"),
        message.alias("reject_message"),
        F.when(reject.isNotNull(), raw_slice).alias("raw_slice"),
    )
