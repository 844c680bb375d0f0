"""The contenders we are measured against, and the upsert benchmark's seed, run as processes of their own.

    python -m benchmarks.peers KIND... --source DIR --out DIR [--config FILE] [--mapping simple|job ...]
                               [--event-log DIR]       # KIND: plain, delta, iceberg
    python -m benchmarks.peers seed --source DIR --warehouse DIR [--source DIR --warehouse DIR ...] [--config FILE]
    python -m benchmarks.peers fetch                   # the Delta and Iceberg jars, into the jar cache

- plain:   a batch read -> Parquet partitioned by `hospital_partition` (the floor: no key, no ordering, no
           table format);
- delta:   Delta Lake 3.3.2, a file stream (`Trigger.AvailableNow`) with MERGE INTO inside foreachBatch;
- iceberg: Iceberg 1.10.0 (Hadoop catalog), the same stream and MERGE INTO;
- seed:    a large `bronze_encounter` for the upsert benchmark, bulk-inserted with the job's own table options
           and `flatten` (setting it up through the job takes an hour at 5M rows; only the upserts after it are
           measured).

A full run starts one process per contender and mapping, so each pays its own JVM start as ours does and no JVM
state leaks between them; a quick run names all of them in one process (one JVM start instead of six: its times
are not compared). `--config` is the settings file whose `[spark]` the session takes (default:
checkpoints_conf/local.toml).

Every contender writes the job's bronze columns, `resource_json` included, with their types, from the same
generated files, read and mapped one of two ways (`--mapping`, repeatable: each contender runs once per mapping):

- simple (default): Spark's own text reader (`native_records`: whole files, NDJSON split into lines) and one
  `from_json` of the 9 fields these R4 files use, no validation, R5 or quarantine: what a plain Spark job would
  write, the floor;
- job: the job's own read step (read._read): the files listed as the job's stream lists them (`binaryFile`),
  split in Python (`records.read_records`), `flatten` with the job's settings, cached and counted in one
  aggregation, rejected rows quarantined, one version per key by the job's ordering rule: only the table format
  and the job's exactly-once bookkeeping (ledger, ingest log, catalog) differ from ours.

MERGE keeps one row per key, the newest `precombine_ts`, moving rows between hospital partitions as the job's
global index does. Each contender writes into `<out>/<mapping>/<kind>` and prints JSON lines on stdout, each with
its `kind` and `mapping`: `start`, `written` after each write (a stream's inside foreachBatch, after the batch's
MERGE: the last one is its end, as ours' is its last batch), then `rows` (counted after it). The seed prints
`written` and `rows` for each `--warehouse`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from streaming import config as conf
from streaming.lakehouse.jars import Jar, download

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from streaming.pipeline.deps import BatchStats

# Bench-only jars, never on the job's classpath; fetched into the job's jar cache, SHA-1 pinned like lakehouse/jars.py.
DELTA_VERSION = "3.3.2"
ICEBERG_VERSION = "1.10.0"
BENCH_JARS: dict[str, tuple[Jar, ...]] = {
    "delta": (
        Jar("io.delta", "delta-spark_2.12", DELTA_VERSION, "07fff11b74e7284eec27fe106f31c95b3acc8018"),
        Jar("io.delta", "delta-storage", DELTA_VERSION, "e24b01486ee7a26df8a2735eb186f4ee1821fc9e"),
    ),
    "iceberg": (
        Jar(
            "org.apache.iceberg",
            "iceberg-spark-runtime-3.5_2.12",
            ICEBERG_VERSION,
            "e9e56f219ee65d302a96d598470365733b824018",
        ),
    ),
}
CONTENDERS = ("plain", "delta", "iceberg")
MAPPINGS = ("simple", "job")
JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def iceberg_table(mapping: str) -> str:
    """The Iceberg table of one mapping: a Hadoop catalog per mapping, its warehouse in `<out>/<mapping>/iceberg`."""
    return f"bench_{mapping}.db.bronze_encounter"


class Counted(NamedTuple):
    """What a contender's table holds once written (counted after its end), and the rows it quarantined."""

    rows: int
    keys: int
    rejected: int | None  # None: the `simple` mapping validates nothing


def fetch_jars(kind: str) -> list[Path]:
    """The jars `kind` needs, put into the job's jar cache once (SHA-1 checked); their paths."""
    return [download(jar) for jar in BENCH_JARS.get(kind, ())]


def peer_session(
    kinds: Sequence[str],
    out: Path,
    resources: conf.SparkConfig,
    event_log: Path | None = None,
    mappings: Sequence[str] = ("simple",),
) -> SparkSession:
    """A local Spark with the job's resources and settings and the table formats of `kinds` (several: one session);
    an Iceberg catalog per mapping."""
    from pyspark.sql import SparkSession

    from streaming.lakehouse.session import HUDI_SPARK_CONF, JOL_SKIP_PROBES, LOG4J2_PROPERTIES

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    own_java_options = f"-Dlog4j.configurationFile={LOG4J2_PROPERTIES.as_uri()} {JOL_SKIP_PROBES}"
    settings: dict[str, str] = {
        "spark.driver.memory": resources.driver_memory,
        "spark.sql.shuffle.partitions": str(resources.shuffle_partitions),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        # The job's serializer, time zone and ANSI setting, so only the table format differs.
        "spark.serializer": HUDI_SPARK_CONF["spark.serializer"],
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.ansi.enabled": "false",
        # The settings file's own (the bench's scratch folders; a quick run's JIT), its Java options after ours.
        **resources.conf,
        "spark.driver.extraJavaOptions": f"{own_java_options} {resources.conf.get(JAVA_OPTIONS, '')}".strip(),
    }
    extensions = []
    if "delta" in kinds:
        extensions.append("io.delta.sql.DeltaSparkSessionExtension")
        settings["spark.sql.catalog.spark_catalog"] = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    if "iceberg" in kinds:
        extensions.append("org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
        for mapping in mappings:
            catalog = f"spark.sql.catalog.{iceberg_table(mapping).split('.')[0]}"
            settings |= {
                catalog: "org.apache.iceberg.spark.SparkCatalog",
                f"{catalog}.type": "hadoop",
                f"{catalog}.warehouse": str(out / mapping / "iceberg" / "warehouse"),
                # A cached table object would let the count below read the snapshot from before the MERGE.
                f"{catalog}.cache-enabled": "false",
            }
    if extensions:
        settings["spark.sql.extensions"] = ",".join(extensions)
        settings["spark.jars"] = ",".join(str(p) for kind in kinds for p in fetch_jars(kind))
    if event_log is not None:
        event_log.mkdir(parents=True, exist_ok=True)
        settings |= {"spark.eventLog.enabled": "true", "spark.eventLog.dir": event_log.resolve().as_uri()}
    builder = SparkSession.builder.appName(f"bench-{'-'.join(kinds)}").master(resources.master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def native_records(spark: SparkSession, source: str, *, stream: bool, max_files: int = 500) -> DataFrame:
    """The landed files as records (records.RECORD_SCHEMA) read by Spark alone: whole files, NDJSON split in lines.

    What the job's Python reader does for these generated files (NDJSON and single pretty resources), in Spark
    SQL: `line N` / `file` positions, the original text as `resource_json`, the file's modification time.
    """
    from pyspark.sql import functions as F

    from streaming.bronze.records import RECORD_SCHEMA

    reader = spark.readStream if stream else spark.read
    text = reader.format("text").option("wholetext", "true")
    if stream:
        text = text.option("maxFilesPerTrigger", str(max_files)).option("maxFileAge", "36500d")
    files = text.load(source).select(
        "value",
        F.col("_metadata.file_path").alias("path"),
        F.col("_metadata.file_modification_time").alias("modified"),
    )
    ndjson = F.col("path").endswith(".ndjson")
    pieces = F.when(ndjson, F.split("value", "\n")).otherwise(F.array("value"))
    lines = files.select("path", "modified", ndjson.alias("nd"), F.posexplode(pieces).alias("ordinal", "text"))
    lines = lines.where(F.trim("text") != "")
    known = {
        "sourcename": F.col("path"),
        "position": F.when(F.col("nd"), F.concat(F.lit("line "), F.col("ordinal") + 1)).otherwise(F.lit("file")),
        "kind": F.lit("resource"),
        "resource_type": F.get_json_object("text", "$.resourceType"),
        "resource_id": F.get_json_object("text", "$.id"),
        "resource_json": F.col("text"),
        "file_modified": F.col("modified"),
        "ordinal": F.col("ordinal"),
    }
    return lines.select(*[known.get(f.name, F.lit(None)).cast(f.dataType).alias(f.name) for f in RECORD_SCHEMA])


def job_listing(spark: SparkSession, source: str, *, stream: bool, max_files: int = 500) -> DataFrame:
    """The landed files as the job's stream lists them (job.start_stream): path, length, modificationTime."""
    from streaming.pipeline.job import BINARY_FILE_SCHEMA, MAX_FILE_AGE

    reader = spark.readStream if stream else spark.read
    files = reader.format("binaryFile").schema(BINARY_FILE_SCHEMA).option("recursiveFileLookup", "true")
    if stream:
        files = files.option("maxFileAge", MAX_FILE_AGE).option("maxFilesPerTrigger", str(max_files))
    return files.load(source).select("path", "length", "modificationTime")


def job_read(listing: DataFrame, config: conf.JobConfig) -> tuple[DataFrame, BatchStats]:
    """The job's read step over listed files, as read._read does it: split in Python, `flatten` with the job's
    settings, cached; and its statistics, one aggregation (which fills the cache). Unpersist the rows when done."""
    from streaming.bronze.flatten import flatten
    from streaming.bronze.records import LandedFile, read_records
    from streaming.pipeline.read import aggregate

    files = [LandedFile(r.path, r.length, r.modificationTime) for r in listing.collect()]
    fhir = config.fhir
    rows = flatten(
        read_records(listing.sparkSession, files, fhir),
        ingested_at=datetime.now(UTC),
        keep_resource_json=fhir.keep_resource_json,
        raw_slice_chars=fhir.raw_slice_chars,
        future_tolerance_hours=fhir.future_tolerance_hours,
        key_scope=config.key_scope,
        source=config.source,
    ).persist()
    return rows, aggregate(rows)


def quarantine(rows: DataFrame, stats: BatchStats, out: Path, batch_id: int) -> None:
    """A batch's rejected rows as the job's quarantine rows, appended as Parquet (the job upserts them into Hudi).

    The generated files hold none: then this costs what the job's check costs, the statistics already counted.
    """
    if stats.rows_rejected:
        from streaming.bronze.flatten import quarantine_rows

        rejected = quarantine_rows(rows, f"bench-{batch_id}", batch_id, datetime.now(UTC))
        rejected.write.mode("append").parquet(str(out / "quarantine"))


# flatten's rows that go into bronze: resources, not rejected (the generated files hold no deletes).
GOOD = "kind = 'resource' AND reject_reason IS NULL"


def good_rows(rows: DataFrame, *, deleted_flag: bool = False) -> DataFrame:
    """flatten's rows that go into bronze, the bronze columns."""
    from streaming.bronze.flatten import BRONZE_COLUMNS

    return rows.where(GOOD).select(*BRONZE_COLUMNS, *(["_hoodie_is_deleted"] if deleted_flag else []))


def bronze_rows(records: DataFrame, *, mapping: str = "simple", deleted_flag: bool = False) -> DataFrame:
    """The job's bronze columns (names and types) for good Encounter records.

    `simple` maps them the way a plain Spark job would for these generated R4 files (one `from_json`, direct paths,
    no validation, no R5, no quarantine): the floor. `job` runs the job's own `flatten` over these records (the
    seed's records come from Spark's reader; the contenders' `job` mapping reads with the job's, see job_read).
    """
    from pyspark.sql import functions as F

    from streaming.bronze.flatten import BRONZE_COLUMNS, flatten

    now = datetime.now(UTC)
    if mapping == "job":
        # Cached before the filter, as the batch does (flatten's docstring): uncached, a 1M-row seed took > 30 minutes.
        return good_rows(flatten(records, ingested_at=now).persist(), deleted_flag=deleted_flag)
    schema = flatten(records.limit(0), ingested_at=now).select(*BRONZE_COLUMNS).schema  # analysis only
    r = F.from_json(
        "resource_json",
        "id string, status string, class struct<code: string>, subject struct<reference: string>,"
        " period struct<start: string, end: string>, location array<struct<location: struct<display: string>>>,"
        " participant array<struct<type: array<struct<coding: array<struct<code: string>>>>,"
        " individual: struct<reference: string>>>, serviceProvider struct<display: string>,"
        " meta struct<lastUpdated: string>",
    )
    from streaming.fhir.mapping import CLASS_LABELS

    labels = F.create_map(*[F.lit(x) for pair in CLASS_LABELS.items() for x in pair])
    parsed = records.select("sourcename", "position", "resource_json", "file_modified", r.alias("r"))
    known = {
        "encounter_id": F.col("r.id"),
        "status": F.col("r.status"),
        "class_code": F.col("r.class.code"),
        "encounter_type": F.element_at(labels, F.col("r.class.code")),
        "patient_ref": F.col("r.subject.reference"),
        "admission_time": F.to_timestamp("r.period.start"),
        "discharge_time": F.to_timestamp("r.period.end"),
        "department": F.col("r.location")[0]["location"]["display"],
        "participant_role": F.col("r.participant")[0]["type"][0]["coding"][0]["code"],
        "practitioner_ref": F.col("r.participant")[0]["individual"]["reference"],
        "hospital_name": F.col("r.serviceProvider.display"),
        "last_updated": F.to_timestamp("r.meta.lastUpdated"),
        "fhir_version": F.lit("R4"),
        "sourcename": F.col("sourcename"),
        "source_position": F.col("position"),
        "resource_json": F.col("resource_json"),
        "precombine_ts": F.to_timestamp("r.meta.lastUpdated"),
        "ingested_at": F.lit(now),
        "source_modified": F.col("file_modified"),
        "is_deleted": F.lit(False),
        "hospital_partition": F.col("r.serviceProvider.display"),
    }
    columns = [known.get(f.name, F.lit(None)).cast(f.dataType).alias(f.name) for f in schema]
    return parsed.select(*columns, *([F.lit(False).alias("_hoodie_is_deleted")] if deleted_flag else []))


def newest(rows: DataFrame) -> DataFrame:
    """One row per encounter_id, the newest precombine_ts (later file, later position on a tie): MERGE needs it."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("encounter_id").orderBy(
        F.col("precombine_ts").desc(), F.col("sourcename").desc(), F.col("source_position").desc()
    )
    return rows.withColumn("_rank", F.row_number().over(order)).where("_rank = 1").drop("_rank")


def _ddl(df: DataFrame) -> str:
    return ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in df.schema)


def run_plain(spark: SparkSession, source: str, out: Path, mapping: str, config: conf.JobConfig) -> Counted:
    """Read, map and write partitioned Parquet (overwrite; no key, no ordering); what was written, counted."""
    target = str(out / "bronze_encounter")
    rejected = None
    if mapping == "simple":
        rows = bronze_rows(native_records(spark, source, stream=False))
        rows.write.mode("overwrite").partitionBy("hospital_partition").parquet(target)
    else:
        read, stats = job_read(job_listing(spark, source, stream=False), config)
        try:
            quarantine(read, stats, out, 0)
            good_rows(read).write.mode("overwrite").partitionBy("hospital_partition").parquet(target)
        finally:
            read.unpersist()
        rejected = stats.rows_rejected
    event("written", kind="plain", mapping=mapping, batch_id=0)
    table = spark.read.parquet(target)
    return Counted(table.count(), table.select("encounter_id").distinct().count(), rejected)


def run_merge(
    spark: SparkSession, kind: str, source: str, out: Path, max_files: int, mapping: str, config: conf.JobConfig
) -> Counted:
    """File stream -> foreachBatch(read, map, newest per key, MERGE INTO) into a Delta or Iceberg table (AvailableNow).

    `written` is printed inside foreachBatch after each MERGE: the last one is the contender's end, before the
    stream's own shutdown and the counts (ours ends at its last batch the same way).
    """
    from streaming.bronze.flatten import bronze_rows as job_winners

    schema_of = bronze_rows(native_records(spark, source, stream=False), mapping=mapping)  # analysis only
    if kind == "delta":
        target = f"delta.`{out / 'bronze_encounter'}`"
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS {target} ({_ddl(schema_of)}) USING delta PARTITIONED BY (hospital_partition)"
        )
    else:
        target = iceberg_table(mapping)
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS {target} ({_ddl(schema_of)}) USING iceberg PARTITIONED BY (hospital_partition)"
        )
    keys = conf.key_columns(config) if mapping == "job" else ("encounter_id",)
    matched = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    rejected = 0

    def each_batch(batch: DataFrame, batch_id: int) -> None:
        nonlocal rejected
        read: DataFrame | None = None
        try:
            if mapping == "simple":
                winners = newest(bronze_rows(batch))
            else:
                read, stats = job_read(batch, config)
                rejected += stats.rows_rejected
                quarantine(read, stats, out, batch_id)
                # Computed once and held, as the job persists its winners. Not persist(): Delta's MERGE does not
                # read a cached source (delta-io/delta#2011) and split the files in Python again (event log).
                winners = job_winners(read.where(GOOD), keys).drop("_hoodie_is_deleted").localCheckpoint()
                if kind == "delta":  # already materialized: Delta's own copy of the source would be a second one
                    batch.sparkSession.conf.set("spark.databricks.delta.merge.materializeSource", "none")
            view = f"bench_{kind}_{mapping}"
            winners.createOrReplaceTempView(view)
            batch.sparkSession.sql(
                f"MERGE INTO {target} t USING {view} s ON {matched}"
                " WHEN MATCHED AND s.precombine_ts >= t.precombine_ts THEN UPDATE SET *"
                " WHEN NOT MATCHED THEN INSERT *"
            )
        finally:
            if read is not None:
                read.unpersist()
        event("written", kind=kind, mapping=mapping, batch_id=batch_id)

    stream = (
        native_records(spark, source, stream=True, max_files=max_files)
        if mapping == "simple"
        else job_listing(spark, source, stream=True, max_files=max_files)
    )
    query = (
        stream.writeStream.option("checkpointLocation", str(out / "checkpoint"))
        .foreachBatch(each_batch)
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    spark.sql(f"REFRESH TABLE {target}")
    table = spark.table(target)
    return Counted(
        table.count(), table.select("encounter_id").distinct().count(), rejected if mapping == "job" else None
    )


def run_seed(spark: SparkSession, source: str, warehouse: str, settings: Path) -> int:
    """Bulk-insert the files into `<warehouse>/bronze_encounter` with the job's write options; return the rows."""
    from streaming.lakehouse.hudi import BULK_INSERT_OPTIONS, HudiWriter, encounter_table

    config = conf.load(settings, {"warehouse": warehouse, "source": source})
    spec = encounter_table(config)
    rows = bronze_rows(native_records(spark, source, stream=False), mapping="job", deleted_flag=True)
    # The job's own first write (HudiWriter: also what it sizes to the cluster, such as the record index's file
    # groups), one writer task per hospital partition, files rolled over at Hudi's 120 MB: the layout the job's
    # upserts (small-file packing) converge to, not one small file per input file and hospital.
    options = HudiWriter(spark).options(spec, {**BULK_INSERT_OPTIONS, "hoodie.bulkinsert.shuffle.parallelism": "8"})
    rows.write.format("hudi").options(**options).mode("append").save(spec.uri)
    event("written", warehouse=warehouse)
    return spark.read.format("hudi").load(spec.uri).count()


def event(name: str, **fields: Any) -> None:
    """One JSON line on stdout for the benchmark that runs this process (read with a timestamp as it arrives)."""
    print(json.dumps({"event": name, "at": time.time(), **fields}), flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "kinds",
        nargs="+",
        choices=[*CONTENDERS, "seed", "fetch"],
        metavar="KIND",
        help=f"{', '.join(CONTENDERS)} (one or more, run one after another), or seed, or fetch",
    )
    parser.add_argument("--source", action="append", default=[], help="folder of generated files (seed: per table)")
    parser.add_argument("--out", type=Path, help="folder the contenders write into, each into <out>/<mapping>/<kind>")
    parser.add_argument("--warehouse", action="append", default=[], help="seed: the job's warehouse, one per --source")
    parser.add_argument("--config", type=Path, help="settings file (default: checkpoints_conf/local.toml)")
    parser.add_argument("--event-log", type=Path, help="write the Spark event log here (profiling)")
    parser.add_argument("--max-files-per-trigger", type=int, default=500)
    parser.add_argument(
        "--mapping",
        action="append",
        choices=MAPPINGS,
        help="simple: Spark's reader, direct paths, as plain Spark would (default); job: the job's read and flatten;"
        " repeatable: each contender runs once per mapping",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run contenders (or the seed, or the jar fetch) in this process."""
    parser = _parser()
    args = parser.parse_args(argv)
    kinds: list[str] = args.kinds
    mappings: list[str] = args.mapping or ["simple"]
    if len(kinds) != len(set(kinds)) or (len(kinds) > 1 and {"seed", "fetch"} & set(kinds)):
        parser.error("name each contender once; seed and fetch run alone")
    if len(mappings) != len(set(mappings)):
        parser.error("name each mapping once")
    if kinds == ["fetch"]:  # `make bench` fetches before anything is timed
        for kind in BENCH_JARS:
            fetch_jars(kind)
        return 0
    settings_file = (args.config or conf.env_file("local")).resolve()
    resources = conf.load(settings_file).spark
    if kinds == ["seed"]:
        if not args.source or len(args.source) != len(args.warehouse):
            parser.error("seed takes one --warehouse per --source")
        _seed(args, resources, settings_file)
        return 0
    if len(args.source) != 1 or args.out is None:
        parser.error("contenders take one --source and an --out")
    _contenders(args, kinds, mappings, resources, settings_file)
    return 0


def _seed(args: argparse.Namespace, resources: conf.SparkConfig, settings_file: Path) -> None:
    """Write each --source into its --warehouse with the job's own session (Hudi, its Spark settings)."""
    from streaming.lakehouse.session import build_spark

    spark = build_spark(resources, app_name="bench-seed")
    for source, warehouse in zip(args.source, args.warehouse, strict=True):
        target = str(Path(warehouse).resolve())
        rows = run_seed(spark, str(Path(source).resolve()), target, settings_file)
        event("rows", warehouse=target, rows=rows, keys=rows)
    spark.stop()


def _contenders(
    args: argparse.Namespace, kinds: list[str], mappings: list[str], resources: conf.SparkConfig, settings_file: Path
) -> None:
    """Run each contender once per mapping in one session, each into <out>/<mapping>/<kind>."""
    source = str(Path(args.source[0]).resolve())
    out = args.out.resolve()
    config = conf.load(settings_file, {"source": source})  # the job's read settings, for the `job` mapping
    spark = peer_session(kinds, out, resources, args.event_log, mappings)
    for mapping in mappings:
        for kind in kinds:
            target = out / mapping / kind
            target.mkdir(parents=True, exist_ok=True)
            event("start", kind=kind, mapping=mapping)  # a process running several: where this one's time starts
            if kind == "plain":
                counted = run_plain(spark, source, target, mapping, config)
            else:
                counted = run_merge(spark, kind, source, target, args.max_files_per_trigger, mapping, config)
            event("rows", kind=kind, mapping=mapping, **counted._asdict(), codec=_codec(spark, kind, mapping))
    spark.stop()


def _codec(spark: SparkSession, kind: str, mapping: str) -> str:
    """The Parquet compression each contender used by default (they differ: part of what is measured)."""
    if kind == "iceberg":
        props = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {iceberg_table(mapping)}").collect()}
        return str(props.get("write.parquet.compression-codec", "zstd"))
    return str(spark.conf.get("spark.sql.parquet.compression.codec"))


if __name__ == "__main__":
    sys.exit(main())
