"""Catalog registration: Glue (against moto's Glue API) and the local JSON catalog, after real job runs."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import job_config

from streaming.adapters import aws
from streaming.bronze import columns
from streaming.bronze.flatten import BRONZE_COLUMNS, HUDI_ESCAPED_CHARS
from streaming.catalog import defs, register_in_spark
from streaming.catalog.defs import (
    COMMENT_CHARS,
    SCHEMA_PART_CHARS,
    TableDef,
    UnsupportedColumnType,
    catalog_text,
    catalog_uri,
    definition_differs,
    hive_type,
    merged_definition,
    partition_input,
    partition_value,
    partition_values,
    schema_cache_file,
    table_defs,
    table_input,
)
from streaming.catalog.glue import GlueCatalog
from streaming.catalog.local import LocalCatalog
from streaming.fhir import mapping
from streaming.generate import encounter, generate
from streaming.pipeline import job

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("bronze_encounter", "bronze_encounter_ingest_log", "bronze_encounter_quarantine")
META = ["_hoodie_commit_time", "_hoodie_commit_seqno", "_hoodie_record_key", "_hoodie_partition_path"]
META += ["_hoodie_file_name"]
DOCS = dict(zip(TABLES, (columns.ENCOUNTER, columns.INGEST_LOG, columns.QUARANTINE), strict=True))


def _meaning(table: str, column: str) -> str:
    """What a column of one of the three tables means, as written in the code (Hudi's meta columns: Hudi's)."""
    return columns.HUDI_META.get(column) or DOCS[table].meanings[column]


def _assert_comment(comment: str, meaning: str) -> None:
    """A registered comment is the meaning, or, when that is longer than Glue allows, a marked prefix of it."""
    assert comment, "a column without a comment"
    if len(meaning) <= COMMENT_CHARS:
        assert comment == meaning
    else:
        assert len(comment) <= COMMENT_CHARS
        assert comment.endswith("...")
        assert meaning.startswith(comment.removesuffix("..."))
        assert len(comment) > COMMENT_CHARS // 2  # cut at a clause, not to a stub


def _assert_documented(table_in: dict[str, Any]) -> None:
    """Every column and partition key of a registered table carries its meaning; the table its description."""
    name = table_in["Name"]
    assert table_in["Description"] == DOCS[name].description
    for column in [*table_in["StorageDescriptor"]["Columns"], *table_in.get("PartitionKeys", [])]:
        _assert_comment(column.get("Comment", ""), _meaning(name, column["Name"]))


# ---------------------------------------------------------------- unit: types, partition values, locations


def test_hive_types_of_spark_types() -> None:
    from pyspark.sql import types as T

    cases = {
        T.StringType(): "string",
        T.LongType(): "bigint",
        T.IntegerType(): "int",
        T.ShortType(): "int",
        T.BooleanType(): "boolean",
        T.DoubleType(): "double",
        T.FloatType(): "float",
        T.TimestampType(): "timestamp",
        T.DateType(): "date",
        T.BinaryType(): "binary",
        T.DecimalType(12, 3): "decimal(12,3)",
        T.ArrayType(T.StringType()): "array<string>",
        T.MapType(T.StringType(), T.LongType()): "map<string,bigint>",
        T.StructType([T.StructField("code", T.StringType()), T.StructField("n", T.IntegerType())]): (
            "struct<code:string,n:int>"
        ),
        T.ArrayType(T.StructType([T.StructField("at", T.TimestampType())])): "array<struct<at:timestamp>>",
    }
    assert {t.simpleString(): hive_type(t) for t in cases} == {t.simpleString(): v for t, v in cases.items()}


def test_a_type_without_a_hive_type_is_refused() -> None:
    from pyspark.sql import types as T

    with pytest.raises(UnsupportedColumnType, match="interval"):
        hive_type(T.DayTimeIntervalType())


def _hudi_escape(value: str) -> str:
    """Hudi's partition path encoding, written out independently: %XX for its special and control characters."""
    return "".join(f"%{ord(c):02X}" if c in HUDI_ESCAPED_CHARS or ord(c) < 32 else c for c in value)


@pytest.mark.parametrize(
    "name",
    ["St. Mary's Medical Center", "Mercy North/South Campus", "100% care", "a=b?c#d", "plus+sign", "Zürich ~1a2b"],
)
def test_partition_folder_value_is_url_decoded(name: str) -> None:
    folder = f"hospital_partition={_hudi_escape(name)}"
    assert partition_value(folder, "hospital_partition") == name


def test_partition_folder_of_another_key_or_no_key_is_not_a_value() -> None:
    assert partition_value("other=x", "hospital_partition") is None
    assert partition_value(".hoodie", "hospital_partition") is None
    assert partition_values("hospital_partition=A%27s", ("hospital_partition",)) == ("A's",)
    assert partition_values("y=2024/m=05", ("y", "m")) == ("2024", "05")
    assert partition_values("y=2024", ("y", "m")) is None
    assert partition_values("", ()) is None  # an unpartitioned table's commit names the partition ""


def test_locations_are_registered_as_s3_not_s3a() -> None:
    assert catalog_uri("s3a://b/w/t") == "s3://b/w/t"
    assert catalog_uri("s3n://b/w/t") == "s3://b/w/t"
    assert catalog_uri("s3://b/w/t") == "s3://b/w/t"
    assert catalog_uri("/tmp/w/t") == "/tmp/w/t"


def test_long_schemas_are_cut_into_parts_like_hudi() -> None:
    from pyspark.sql import types as T

    fields = [T.StructField(f"column_with_a_long_name_{i:03d}", T.StringType()) for i in range(120)]
    table = TableDef("wide", "s3a://b/w/wide", T.StructType([*fields, T.StructField("p", T.StringType())]), ("p",))
    params = table_input(table, "3.5.6")["Parameters"]
    parts = int(params["spark.sql.sources.schema.numParts"])
    assert parts > 1
    text = "".join(params[f"spark.sql.sources.schema.part.{i}"] for i in range(parts))
    assert all(len(params[f"spark.sql.sources.schema.part.{i}"]) <= SCHEMA_PART_CHARS for i in range(parts))
    names = [f["name"] for f in json.loads(text)["fields"]]
    assert names == [*META, *(f.name for f in fields), "p"]  # partition column last, as Spark expects


def test_only_a_change_of_ours_is_an_update_and_it_keeps_what_others_set() -> None:
    from pyspark.sql import types as T

    fields = [T.StructField("id", T.StringType()), T.StructField("p", T.StringType())]
    desired = table_input(TableDef("t", "s3a://b/w/t", T.StructType(fields), ("p",)), "3.5.6")
    others = {"Description": "by the data team", "Owner": "lake"}
    params = {**desired["Parameters"], "spark.sql.create.version": "3.3.0", "classification": "parquet"}
    stored = {**json.loads(json.dumps(desired)), **others, "Parameters": params}
    # Another engine's parameter, an older creating Spark version, a description and an owner are no change.
    assert not definition_differs(stored, desired)
    assert definition_differs({**stored, "TableType": "VIRTUAL_VIEW"}, desired)

    wider = T.StructType([*fields, T.StructField("n", T.LongType())])
    changed = table_input(TableDef("t", "s3a://b/w/t", wider, ("p",)), "3.5.6")
    assert definition_differs(stored, changed)
    merged = merged_definition(stored, changed)
    assert {k: merged[k] for k in others} == others
    kept = {"spark.sql.create.version": "3.3.0", "classification": "parquet"}  # the creator's version stays
    assert merged["Parameters"] == {**changed["Parameters"], **kept}
    assert merged["StorageDescriptor"]["Columns"][-1] == {"Name": "n", "Type": "bigint"}
    assert not definition_differs(merged, changed)


def test_every_bronze_column_has_a_meaning_from_the_mapping() -> None:
    rules = {rule.column: rule.meaning for rule in mapping.RULES}
    meanings = columns.ENCOUNTER.meanings
    assert set(meanings) == {*BRONZE_COLUMNS, "_hoodie_is_deleted"}
    assert {name: meanings[name] for name in BRONZE_COLUMNS} == {**rules, **mapping.PIPELINE_COLUMNS}
    assert [*meanings][: len(rules)] == [*rules]


def test_the_ingest_log_schema_and_its_meanings_are_one_list() -> None:
    names = [part.split()[0] for part in columns.INGEST_LOG_SCHEMA.split(", ")]
    assert names == list(columns.INGEST_LOG.meanings)
    assert all(columns.INGEST_LOG.meanings.values())


def test_a_meaning_longer_than_glue_allows_is_cut_at_a_clause() -> None:
    clause = "start of the encounter as a UTC timestamp: " + "x" * 150
    meaning = f"{clause}; a partial date (`2013`, `2013-03`) is the start of that period, " + "y " * 60
    comment = catalog_text(meaning)
    assert comment == f"{clause}..."
    assert catalog_text("short\n  and   on two lines") == "short and on two lines"  # Glue refuses a line break
    assert catalog_text("x" * COMMENT_CHARS) == "x" * COMMENT_CHARS
    # No clause end in the second half: a word end; never an open `code` span before the mark.
    words = catalog_text("word " * 60 + "`a code span that runs past the limit` " + "z " * 100)
    assert len(words) <= COMMENT_CHARS and words.endswith("word...") and "`" not in words


def test_long_mapping_meanings_are_cut_for_glue_and_short_ones_kept() -> None:
    long = [name for name, meaning in columns.ENCOUNTER.meanings.items() if len(meaning) > COMMENT_CHARS]
    assert "hospital_partition" in long  # the case this guards is real
    for table, doc in DOCS.items():
        for name in doc.meanings:
            _assert_comment(catalog_text(doc.meanings[name]), _meaning(table, name))


def test_comments_and_our_description_are_part_of_the_definition() -> None:
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField("id", T.StringType()), T.StructField("p", T.StringType())])
    table = TableDef("t", "s3a://b/w/t", schema, ("p",), "what t holds", {"id": "the key", "p": "the partition"})
    desired = table_input(table, "3.5.6")
    meta = [{"Name": name, "Type": "string", "Comment": columns.HUDI_META[name]} for name in META]
    assert desired["StorageDescriptor"]["Columns"] == [
        *meta,
        {"Name": "id", "Type": "string", "Comment": "the key"},
    ]
    assert desired["PartitionKeys"] == [{"Name": "p", "Type": "string", "Comment": "the partition"}]
    assert desired["Description"] == "what t holds"
    assert not definition_differs(json.loads(json.dumps(desired)), desired)
    # A partition repeats the table's columns, not their comments (a call adds up to 100 partitions).
    partition = partition_input(desired, "p=x", ["x"])
    assert partition["StorageDescriptor"]["Columns"] == [
        {"Name": c["Name"], "Type": c["Type"]} for c in desired["StorageDescriptor"]["Columns"]
    ]
    assert all("Comment" in c for c in desired["StorageDescriptor"]["Columns"])  # the table's own are kept

    # A table registered before comments (or edited by hand) differs once; the update makes it ours, owner kept.
    bare = json.loads(json.dumps(desired))
    for column in [*bare["StorageDescriptor"]["Columns"], *bare["PartitionKeys"]]:
        column.pop("Comment")
    assert definition_differs(bare, desired)
    edited = {**json.loads(json.dumps(desired)), "Description": "by the data team", "Owner": "lake"}
    assert definition_differs(edited, desired)
    merged = merged_definition(edited, desired)
    assert (merged["Description"], merged["Owner"]) == ("what t holds", "lake")
    assert not definition_differs(merged, desired)


# ---------------------------------------------------------------- integration: real runs against moto's Glue


def _database(unique_name: str) -> str:
    return unique_name.replace("-", "_")


def _glue() -> Any:
    return aws.client("glue")


def _partitions(database: str, table: str) -> dict[tuple[str, ...], str]:
    pages = _glue().get_paginator("get_partitions").paginate(DatabaseName=database, TableName=table)
    return {tuple(p["Values"]): p["StorageDescriptor"]["Location"] for page in pages for p in page["Partitions"]}


def _versions(database: str, table: str) -> int:
    # moto records a table version per UpdateTable (and one at CreateTable), as Glue does.
    return len(_glue().get_table_versions(DatabaseName=database, TableName=table)["TableVersions"])


@pytest.fixture
def glue_writes(aws_env: str) -> Iterator[list[str]]:
    """Names of the Glue write calls made through the shared client (the one the job's catalog uses)."""
    calls: list[str] = []
    writes = {"CreateDatabase", "CreateTable", "UpdateTable", "BatchCreatePartition"}

    def record(model: Any, **_: Any) -> None:
        if model.name in writes:
            calls.append(model.name)

    events = _glue().meta.events
    events.register("before-call.glue", record, unique_id="catalog-test-writes")
    try:
        yield calls
    finally:
        events.unregister("before-call.glue", unique_id="catalog-test-writes")


@pytest.fixture
def glue_calls(aws_env: str) -> Iterator[list[str]]:
    """Names of every Glue call, reads included, made through the shared client (the one the job's catalog uses)."""
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    events = _glue().meta.events
    events.register("before-call.glue", record, unique_id="catalog-test-calls")
    try:
        yield calls
    finally:
        events.unregister("before-call.glue", unique_id="catalog-test-calls")


def _hudi_schema(spark: Any, uri: str) -> Any:
    return spark.read.format("hudi").load(uri).schema


def _expected_partitions(spark: Any, uri: str, location: str) -> dict[tuple[str, ...], str]:
    """Distinct (value, folder) pairs read back from the table itself: Hudi's own partition path column."""
    rows = spark.read.format("hudi").load(uri).select("hospital_partition", "_hoodie_partition_path").distinct()
    return {(r.hospital_partition,): f"{location}/{r._hoodie_partition_path}" for r in rows.collect()}


def _write_ndjson(path: Path, hospitals: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    resources = [encounter(rng, hospital=h) for h in hospitals]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))
    return [r["id"] for r in resources]


@pytest.mark.spark
def test_glue_run_registers_the_three_tables_as_hudi_sync_does(
    spark: Any, aws_env: str, s3_bucket: str, unique_name: str, tmp_path: Path
) -> None:
    generate(tmp_path / "landing", files=3, per_file=20, seed=31)
    (tmp_path / "landing" / "broken.ndjson").write_text('{"resourceType": "Encounter", "id": "x1"\n')  # quarantined
    database = _database(unique_name)
    config = job_config(
        tmp_path,
        tmp_path / "landing",
        warehouse=f"s3a://{s3_bucket}/warehouse",
        checkpoint=str(tmp_path / "checkpoint"),
        **{"ledger.path": str(tmp_path / "ledger.sqlite3")},
        **{"catalog.backend": "glue", "tables.database": database},
    )

    job.run(config, once=True, spark=spark)

    assert _glue().get_database(Name=database)["Database"]["Name"] == database
    for name in TABLES:
        table = _glue().get_table(DatabaseName=database, Name=name)["Table"]
        location = f"s3://{s3_bucket}/warehouse/{name}"
        partition_keys = ["hospital_partition"] if name == "bronze_encounter" else []
        sd = table["StorageDescriptor"]
        assert table["TableType"] == "EXTERNAL_TABLE"
        assert sd["Location"] == location
        assert "s3a://" not in json.dumps(table, default=str)
        assert sd["InputFormat"] == "org.apache.hudi.hadoop.HoodieParquetInputFormat"
        assert sd["OutputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
        assert sd["SerdeInfo"] == {
            "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
            "Parameters": {"hoodie.query.as.ro.table": "false", "path": location, "serialization.format": "1"},
        }
        params = table["Parameters"]
        assert params["EXTERNAL"] == "TRUE"
        assert params["spark.sql.sources.provider"] == "hudi"
        assert params["spark.sql.create.version"] == spark.version
        assert "last_commit_time_sync" not in params  # never a per-commit parameter (a Glue version each)
        assert [(k["Name"], k["Type"]) for k in table.get("PartitionKeys", [])] == [
            (k, "string") for k in partition_keys
        ]
        if partition_keys:
            assert params["spark.sql.sources.schema.numPartCols"] == "1"
            assert params["spark.sql.sources.schema.partCol.0"] == "hospital_partition"
        else:
            assert "spark.sql.sources.schema.numPartCols" not in params

        # What Hudi stored (read back through Spark) is the reference: Spark's simple type names are Hive's.
        stored = _hudi_schema(spark, config.table_uri(name))
        expected_columns = [(f.name, f.dataType.simpleString()) for f in stored.fields if f.name not in partition_keys]
        assert [(c["Name"], c["Type"]) for c in sd["Columns"]] == expected_columns
        assert [c["Name"] for c in sd["Columns"]][:5] == META
        _assert_documented(table)  # read back from Glue: each column's meaning, the table's description
        parts = int(params["spark.sql.sources.schema.numParts"])
        registered = json.loads("".join(params[f"spark.sql.sources.schema.part.{i}"] for i in range(parts)))
        reordered = [f for f in stored.fields if f.name not in partition_keys] + [stored[k] for k in partition_keys]
        assert [(f["name"], f["type"], f["nullable"]) for f in registered["fields"]] == [
            (f.name, f.dataType.jsonValue(), f.nullable) for f in reordered
        ]

    bronze_uri = config.table_uri("bronze_encounter")
    expected = _expected_partitions(spark, bronze_uri, f"s3://{s3_bucket}/warehouse/bronze_encounter")
    assert len(expected) > 1
    assert _partitions(database, "bronze_encounter") == expected
    assert _partitions(database, "bronze_encounter_ingest_log") == {}
    assert _partitions(database, "bronze_encounter_quarantine") == {}


@pytest.mark.spark
def test_empty_landing_registers_all_three_tables(spark: Any, aws_env: str, unique_name: str, tmp_path: Path) -> None:
    database = _database(unique_name)
    (tmp_path / "landing").mkdir()
    config = job_config(tmp_path, tmp_path / "landing", **{"catalog.backend": "glue", "tables.database": database})

    job.run(config, once=True, spark=spark)

    for name in TABLES:
        table = _glue().get_table(DatabaseName=database, Name=name)["Table"]
        assert table["StorageDescriptor"]["Location"] == config.table_uri(name)
        assert _versions(database, name) == 1
    columns = _glue().get_table(DatabaseName=database, Name="bronze_encounter")["Table"]["StorageDescriptor"]
    names = [c["Name"] for c in columns["Columns"]]
    assert names[:5] == META and "encounter_id" in names and "hospital_partition" not in names
    assert _partitions(database, "bronze_encounter") == {}


@pytest.mark.spark
def test_partitions_follow_new_hospitals_only_and_heal_after_a_crash(
    spark: Any, glue_writes: list[str], glue_calls: list[str], unique_name: str, tmp_path: Path
) -> None:
    database = _database(unique_name)
    landing = tmp_path / "landing"
    generated = generate(landing, files=2, per_file=40, seed=32)
    config = job_config(tmp_path, landing, **{"catalog.backend": "glue", "tables.database": database})
    uri = config.table_uri("bronze_encounter")
    job.run(config, once=True, spark=spark)
    assert glue_writes == ["CreateDatabase", "CreateTable", "CreateTable", "CreateTable", "BatchCreatePartition"]
    first = _partitions(database, "bronze_encounter")
    assert first == _expected_partitions(spark, uri, uri)
    versions = {name: _versions(database, name) for name in TABLES}
    assert versions == dict.fromkeys(TABLES, 1)  # created once; adding partitions is no UpdateTable

    # What a start calls in Glue, all of it reads: a run with nothing to ingest.
    glue_writes.clear()
    glue_calls.clear()
    assert job.run(config, once=True, spark=spark).files == 0
    at_start = list(glue_calls)
    assert at_start and glue_writes == []

    # More rows, only hospitals already there, in two batches: no new table version, no new partition.
    known = sorted(generated.per_hospital)
    _write_ndjson(landing / "more-1.ndjson", known, seed=33)
    _write_ndjson(landing / "more-2.ndjson", known, seed=35)
    glue_writes.clear()
    glue_calls.clear()
    summary = job.run(replace(config, max_files_per_trigger=1), once=True, spark=spark)
    assert len(summary.batches) == 2
    assert glue_writes == []  # a batch that changes neither schema nor partitions makes no Glue write at all
    assert glue_calls == at_start  # ... and no read either: every call of the run is the start's
    assert {name: _versions(database, name) for name in TABLES} == versions
    assert _partitions(database, "bronze_encounter") == first

    # A new hospital: exactly one more partition, located at the folder Hudi wrote.
    _write_ndjson(landing / "new.ndjson", ["Harbor Point Clinic's Annex"], seed=34)
    glue_writes.clear()
    glue_calls.clear()
    job.run(config, once=True, spark=spark)
    assert glue_writes == ["BatchCreatePartition"]
    assert glue_calls == [*at_start, "BatchCreatePartition"]
    after = _partitions(database, "bronze_encounter")
    assert set(after) - set(first) == {("Harbor Point Clinic's Annex",)}
    assert after == _expected_partitions(spark, uri, uri)
    assert after[("Harbor Point Clinic's Annex",)] == f"{uri}/hospital_partition=Harbor Point Clinic%27s Annex"
    assert {name: _versions(database, name) for name in TABLES} == versions

    # A crash between a Hudi commit and the catalog call leaves a partition unregistered: the next start adds it.
    lost = ("Harbor Point Clinic's Annex",)  # its folder name is URL-encoded: the listing must decode it
    _glue().batch_delete_partition(
        DatabaseName=database, TableName="bronze_encounter", PartitionsToDelete=[{"Values": list(lost)}]
    )
    assert lost not in _partitions(database, "bronze_encounter")
    glue_writes.clear()
    summary = job.run(config, once=True, spark=spark)
    assert glue_writes == ["BatchCreatePartition"]
    assert summary.files == 0  # nothing new was written: only the reconcile at start can have added it back
    assert _partitions(database, "bronze_encounter") == after
    assert {name: _versions(database, name) for name in TABLES} == versions


@pytest.mark.spark
def test_a_new_column_updates_the_table_once(spark: Any, aws_env: str, unique_name: str, tmp_path: Path) -> None:
    database = _database(unique_name)
    config = job_config(tmp_path, tmp_path / "landing", **{"catalog.backend": "glue", "tables.database": database})
    defs = table_defs(spark, config)
    catalog = GlueCatalog(spark, database)
    catalog.ensure(defs)
    log_def = next(d for d in defs if d.name == "bronze_encounter_ingest_log")
    assert _versions(database, log_def.name) == 1

    catalog.sync(log_def)  # same schema: no call at all
    assert _versions(database, log_def.name) == 1

    evolved = dataclasses.replace(log_def, schema=log_def.schema.add("source_system", "string"))  # no meaning yet
    catalog.sync(evolved)
    catalog.sync(evolved)
    assert _versions(database, log_def.name) == 2
    table = _glue().get_table(DatabaseName=database, Name=log_def.name)["Table"]
    assert table["StorageDescriptor"]["Columns"][-1] == {"Name": "source_system", "Type": "string"}

    # A restart with the evolved schema reads the catalog once and finds nothing to change.
    GlueCatalog(spark, database).ensure([evolved])
    assert _versions(database, log_def.name) == 2
    assert all(_versions(database, d.name) == 1 for d in defs if d.name != log_def.name)


@pytest.mark.spark
def test_comments_reach_a_table_registered_without_them_once(
    spark: Any, glue_writes: list[str], unique_name: str, tmp_path: Path
) -> None:
    database = _database(unique_name)
    config = job_config(tmp_path, tmp_path / "landing", **{"catalog.backend": "glue", "tables.database": database})
    defs = table_defs(spark, config)
    _glue().create_database(DatabaseInput={"Name": database})
    for table_def in defs:  # as registered before comments: the same definition without them
        bare = table_input(table_def, spark.version)
        del bare["Description"]
        for column in [*bare["StorageDescriptor"]["Columns"], *bare["PartitionKeys"]]:
            del column["Comment"]
        _glue().create_table(DatabaseName=database, TableInput=bare)

    glue_writes.clear()
    started = GlueCatalog(spark, database)
    started.ensure(defs)  # the first start with comments: one update per table
    assert glue_writes == ["UpdateTable"] * len(TABLES)
    for table_def in defs:  # every batch syncs the tables it wrote: the definition is unchanged, no call
        started.sync(table_def)
        started.sync(table_def)
    GlueCatalog(spark, database).ensure(defs)  # a restart reads the comments back and finds nothing to change
    assert glue_writes == ["UpdateTable"] * len(TABLES)
    for name in TABLES:
        _assert_documented(_glue().get_table(DatabaseName=database, Name=name)["Table"])
        assert _versions(database, name) == 2


@pytest.mark.spark
def test_a_failed_partition_call_is_retried_by_the_next_sync(
    spark: Any, aws_env: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = _database(unique_name)
    config = job_config(tmp_path, tmp_path / "landing", **{"catalog.backend": "glue", "tables.database": database})
    bronze = next(d for d in table_defs(spark, config) if d.name == "bronze_encounter")
    catalog = GlueCatalog(spark, database)
    catalog.ensure([bronze])
    add = catalog._add_partitions
    failures = iter([RuntimeError("Glue throttled")])

    def flaky(name: str, inputs: list[dict[str, Any]]) -> None:
        for error in failures:  # only the first call fails
            raise error
        add(name, inputs)

    monkeypatch.setattr(catalog, "_add_partitions", flaky)
    with pytest.raises(RuntimeError):
        catalog.sync(bronze, ["hospital_partition=Alpha"])
    catalog.sync(bronze, ["hospital_partition=Beta"])  # the next batch's call registers both

    parts = _glue().get_partitions(DatabaseName=database, TableName="bronze_encounter")["Partitions"]
    assert sorted(p["Values"] for p in parts) == [["Alpha"], ["Beta"]]


# ---------------------------------------------------------------- local backend: a new process queries by name


_QUERY = """
import json, sys
from streaming import config as conf
from streaming.catalog import register_in_spark
from streaming.lakehouse.session import build_spark

warehouse, database = sys.argv[1:3]
overrides = {"warehouse": warehouse, "tables.database": database}
overrides |= {"spark.master": "local[1]", "spark.driver_memory": "1g"}
config = conf.load(conf.env_file("local"), overrides)
spark = build_spark(config.spark)
print("REGISTERED", json.dumps(register_in_spark(spark, config)))
rows = spark.sql(f"SELECT hospital_name, count(*) FROM {database}.bronze_encounter GROUP BY 1").collect()
print("COUNTS", json.dumps({r[0]: r[1] for r in rows}))
rows = spark.sql(f"SELECT sourcename, count(*) FROM {database}.bronze_encounter_quarantine GROUP BY 1").collect()
print("QUARANTINED", json.dumps({r[0]: r[1] for r in rows}))
spark.stop()
"""


@pytest.mark.job
def test_local_catalog_lets_a_new_process_query_by_name(spark: Any, unique_name: str, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    generated = generate(landing, files=3, per_file=25, seed=35)
    database = _database(unique_name)  # this session's catalog outlives the test: no shared `bronze` left behind
    config = job_config(tmp_path, landing, **{"catalog.backend": "local", "tables.database": database})

    job.run(config, once=True, spark=spark)

    folder = Path(config.warehouse) / "_catalog" / database
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{name}.json" for name in TABLES)
    for name in TABLES:  # the same comments and description as in Glue
        _assert_documented(json.loads((folder / f"{name}.json").read_text())["TableInput"])
    doc = json.loads((folder / "bronze_encounter.json").read_text())
    uri = config.table_uri("bronze_encounter")
    assert doc["TableInput"]["StorageDescriptor"]["Location"] == uri
    assert {tuple(p["Values"]): p["StorageDescriptor"]["Location"] for p in doc["Partitions"]} == (
        _expected_partitions(spark, uri, uri)
    )
    # Clean input: the quarantine table is defined but Hudi has not written it, so Spark cannot open it yet.
    assert sorted(register_in_spark(spark, config)) == ["bronze_encounter", "bronze_encounter_ingest_log"]
    assert spark.sql(f"SELECT count(*) FROM {database}.bronze_encounter").first()[0] == len(generated.encounter_ids)

    broken = landing / "broken.ndjson"
    broken.write_text('{"resourceType": "Encounter", "id": "x1"\n')
    job.run(config, once=True, spark=spark)
    done = subprocess.run(
        [sys.executable, "-c", _QUERY, config.warehouse, database],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    lines = {
        line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1])
        for line in done.stdout.splitlines()
        if line.startswith(("REGISTERED ", "COUNTS ", "QUARANTINED "))
    }
    assert sorted(lines["REGISTERED"]) == sorted(TABLES)
    assert lines["COUNTS"] == dict(generated.per_hospital)
    assert lines["QUARANTINED"] == {f"file:{broken}": 1}


@pytest.mark.spark
def test_local_catalog_on_s3_is_written_once_through_s3a(
    spark: Any, aws_env: str, s3_bucket: str, unique_name: str, tmp_path: Path
) -> None:
    database = _database(unique_name)
    config = job_config(tmp_path, tmp_path / "landing", warehouse=f"s3a://{s3_bucket}/wh")
    defs = table_defs(spark, config)
    s3 = aws.client("s3")
    # Versioning counts every PUT: how a rewrite of the same content is told from none.
    s3.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    LocalCatalog(spark, config.warehouse, database).ensure(defs)

    prefix = f"wh/_catalog/{database}/"

    def puts() -> dict[str, int]:
        versions = s3.list_object_versions(Bucket=s3_bucket, Prefix=prefix).get("Versions", [])
        return {key: sum(1 for v in versions if v["Key"] == key) for key in {v["Key"] for v in versions}}

    assert puts() == {f"{prefix}{name}.json": 1 for name in TABLES}
    for table in defs:
        doc = json.loads(s3.get_object(Bucket=s3_bucket, Key=f"{prefix}{table.name}.json")["Body"].read())
        assert doc == {"TableInput": table_input(table, spark.version), "Partitions": []}
        assert doc["TableInput"]["StorageDescriptor"]["Location"] == f"s3://{s3_bucket}/wh/{table.name}"

    # A restart finds the same definitions: nothing is rewritten.
    LocalCatalog(spark, config.warehouse, database).ensure(defs)
    assert puts() == {f"{prefix}{name}.json": 1 for name in TABLES}


@pytest.mark.spark
def test_the_schemas_are_derived_once_per_code_and_settings_then_read_back(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    config = job_config(tmp_path, tmp_path / "landing")
    derived = table_defs(spark, config)  # nothing kept yet: derived from the code
    kept = schema_cache_file(config)
    assert kept is not None and kept.parent == tmp_path / "cache" / "bronze-encounter" / "schemas" and kept.is_file()
    real = defs._derived_schemas

    def analysed_again(*_: Any) -> Any:
        raise AssertionError("the schemas were derived again")

    monkeypatch.setattr(defs, "_derived_schemas", analysed_again)
    again = table_defs(spark, config)
    assert again == derived  # read back, field for field: types, nullability, metadata

    # A damaged file is derived again and replaced whole.
    kept.write_text('[{"type": "struct"')
    monkeypatch.setattr(defs, "_derived_schemas", real)
    assert table_defs(spark, config) == derived
    assert len(json.loads(kept.read_text())) == 3
    # No cache to be had (its folder's place is a file): derived, nothing raised.
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert table_defs(spark, config) == derived


def test_the_schema_cache_is_named_by_every_source_file_and_the_settings_flatten_is_given(tmp_path: Path) -> None:
    config = job_config(tmp_path, tmp_path / "landing")
    package = Path(defs.__file__).resolve().parents[1]
    copy = tmp_path / "streaming"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    named = schema_cache_file(config)
    assert named is not None and schema_cache_file(config, copy) == named  # the same files: the same name

    shipped = copy / "viewdef" / "shipped" / "encounter.json"
    shipped.write_text(shipped.read_text() + "\n")
    assert schema_cache_file(config, copy) not in (named, None)  # any file of the package: a mapping, a view
    other = job_config(tmp_path, tmp_path / "landing", **{"fhir.raw_slice_chars": 10})
    assert schema_cache_file(other) not in (named, None)
    (copy / "bronze" / "flatten.py").unlink()
    assert schema_cache_file(config, copy) is None  # not the package's files one by one: no cache
