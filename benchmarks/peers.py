"""The contenders we are measured against, and the upsert benchmark's seed, run as processes of their own.

    python -m benchmarks.peers KIND... --source DIR --out DIR [--config FILE] [--mapping simple|ours]
                               [--event-log DIR]       # KIND: plain, delta, iceberg
    python -m benchmarks.peers seed --source DIR --warehouse DIR [--source DIR --warehouse DIR ...] [--config FILE]
    python -m benchmarks.peers fetch                   # the Delta and Iceberg jars, into the jar cache

- plain:   Spark's own file reader -> Parquet partitioned by `hospital_partition` (the floor: no key, no
           ordering, no table format);
- delta:   Delta Lake 3.3.2, a file stream (`Trigger.AvailableNow`) with MERGE INTO inside foreachBatch;
- iceberg: Iceberg 1.10.0 (Hadoop catalog), the same stream and MERGE INTO;
- seed:    a large `bronze_encounter` for the upsert benchmark, bulk-inserted with the job's own table options
           and `flatten` (setting it up through the job takes an hour at 5M rows; only the upserts after it are
           measured).

A full run starts one process per contender, so each pays its own JVM start as ours does and no JVM state leaks
between them; a quick run names all three in one process (one JVM start instead of three: its times are not
compared). `--config` is the settings file whose `[spark]` the session takes (default: checkpoints_conf/local.toml).

Every contender reads the same generated files the same way (`native_records`: whole files, NDJSON split into
lines, `line N` positions) and writes the job's bronze columns, `resource_json` included, with their types.
`--mapping simple` (default) fills them the way a plain Spark job would for these R4 files; `--mapping ours`
runs the job's own `flatten`, so only the table format differs. MERGE keeps one row per `encounter_id`, the
newest `precombine_ts`, moving rows between hospital partitions as the job's global index does. Each contender
writes into `<out>/<kind>` and prints JSON lines on stdout, each with its `kind`: `written` (its data committed),
then `rows` (counted after it). The seed prints `written` and `rows` for each `--warehouse`.
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
from typing import TYPE_CHECKING, Any

from streaming import config as conf
from streaming.jars import Jar, download

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Bench-only jars, never on the job's classpath; fetched into the job's jar cache, SHA-1 pinned like streaming/jars.py.
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
JAVA_OPTIONS = "spark.driver.extraJavaOptions"
ICEBERG_TABLE = "bench.db.bronze_encounter"


def fetch_jars(kind: str) -> list[Path]:
    """The jars `kind` needs, put into the job's jar cache once (SHA-1 checked); their paths."""
    return [download(jar) for jar in BENCH_JARS.get(kind, ())]


def peer_session(
    kinds: Sequence[str], out: Path, resources: conf.SparkConfig, event_log: Path | None = None
) -> SparkSession:
    """A local Spark with the job's resources and settings and the table formats of `kinds` (several: one session)."""
    from pyspark.sql import SparkSession

    from streaming.session import HUDI_SPARK_CONF, JOL_SKIP_PROBES, LOG4J2_PROPERTIES

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
        settings |= {
            "spark.sql.catalog.bench": "org.apache.iceberg.spark.SparkCatalog",
            "spark.sql.catalog.bench.type": "hadoop",
            "spark.sql.catalog.bench.warehouse": str(out / "iceberg" / "iceberg"),
            # A cached table object would let the count below read the snapshot from before the MERGE.
            "spark.sql.catalog.bench.cache-enabled": "false",
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

    from streaming.records import RECORD_SCHEMA

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


def bronze_rows(records: DataFrame, *, mapping: str = "simple", deleted_flag: bool = False) -> DataFrame:
    """The job's bronze columns (names and types) for good Encounter records.

    `simple` maps them the way a plain Spark job would for these generated R4 files (one `from_json`, direct paths,
    no validation, no R5, no quarantine): the floor. `ours` runs the job's own `flatten`, so only the table format
    differs from the job.
    """
    from pyspark.sql import functions as F

    from streaming.flatten import BRONZE_COLUMNS, flatten

    now = datetime.now(UTC)
    if mapping == "ours":
        rows = flatten(records, ingested_at=now).where("kind = 'resource' AND reject_reason IS NULL")
        return rows.select(*BRONZE_COLUMNS, *(["_hoodie_is_deleted"] if deleted_flag else []))
    schema = flatten(records.limit(0), ingested_at=now).select(*BRONZE_COLUMNS).schema  # analysis only
    r = F.from_json(
        "resource_json",
        "id string, status string, class struct<code: string>, subject struct<reference: string>,"
        " period struct<start: string, end: string>, location array<struct<location: struct<display: string>>>,"
        " participant array<struct<type: array<struct<coding: array<struct<code: string>>>>,"
        " individual: struct<reference: string>>>, serviceProvider struct<display: string>,"
        " meta struct<lastUpdated: string>",
    )
    from streaming.mapping import CLASS_LABELS

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


def run_plain(spark: SparkSession, source: str, out: Path, mapping: str) -> tuple[int, int]:
    """Read, map and write partitioned Parquet (overwrite); return (rows, distinct keys) written."""
    target = str(out / "bronze_encounter")
    bronze_rows(native_records(spark, source, stream=False), mapping=mapping).write.mode("overwrite").partitionBy(
        "hospital_partition"
    ).parquet(target)
    event("written", kind="plain")
    table = spark.read.parquet(target)
    return table.count(), table.select("encounter_id").distinct().count()


def run_merge(spark: SparkSession, kind: str, source: str, out: Path, max_files: int, mapping: str) -> tuple[int, int]:
    """File stream -> foreachBatch(map, newest, MERGE INTO) into a Delta or Iceberg table (AvailableNow)."""
    schema_of = bronze_rows(native_records(spark, source, stream=False), mapping=mapping)
    if kind == "delta":
        target = f"delta.`{out / 'delta' / 'bronze_encounter'}`"
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS {target} ({_ddl(schema_of)}) USING delta PARTITIONED BY (hospital_partition)"
        )
    else:
        target = ICEBERG_TABLE
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS {target} ({_ddl(schema_of)}) USING iceberg PARTITIONED BY (hospital_partition)"
        )

    def each_batch(records: DataFrame, batch_id: int) -> None:
        newest(bronze_rows(records, mapping=mapping)).createOrReplaceTempView("bench_source")
        records.sparkSession.sql(
            f"MERGE INTO {target} t USING bench_source s ON t.encounter_id = s.encounter_id"
            " WHEN MATCHED AND s.precombine_ts >= t.precombine_ts THEN UPDATE SET *"
            " WHEN NOT MATCHED THEN INSERT *"
        )

    query = (
        native_records(spark, source, stream=True, max_files=max_files)
        .writeStream.option("checkpointLocation", str(out / f"{kind}-checkpoint"))
        .foreachBatch(each_batch)
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    event("written", kind=kind)
    spark.sql(f"REFRESH TABLE {target}")
    table = spark.table(target)
    return table.count(), table.select("encounter_id").distinct().count()


def run_seed(spark: SparkSession, source: str, warehouse: str, settings: Path) -> int:
    """Bulk-insert the files into `<warehouse>/bronze_encounter` with the job's write options; return the rows."""
    from streaming.hudi import BULK_INSERT_OPTIONS, HudiWriter, encounter_table

    config = conf.load(settings, {"warehouse": warehouse, "source": source})
    spec = encounter_table(config)
    rows = bronze_rows(native_records(spark, source, stream=False), mapping="ours", deleted_flag=True)
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


def main(argv: list[str] | None = None) -> int:
    """Run contenders (or the seed, or the jar fetch) in this process."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "kinds",
        nargs="+",
        choices=[*CONTENDERS, "seed", "fetch"],
        metavar="KIND",
        help=f"{', '.join(CONTENDERS)} (one or more, run one after another), or seed, or fetch",
    )
    parser.add_argument("--source", action="append", default=[], help="folder of generated files (seed: per table)")
    parser.add_argument("--out", type=Path, help="folder the contenders write into, each into <out>/<kind>")
    parser.add_argument("--warehouse", action="append", default=[], help="seed: the job's warehouse, one per --source")
    parser.add_argument("--config", type=Path, help="settings file (default: checkpoints_conf/local.toml)")
    parser.add_argument("--event-log", type=Path, help="write the Spark event log here (profiling)")
    parser.add_argument("--max-files-per-trigger", type=int, default=500)
    parser.add_argument(
        "--mapping",
        choices=["simple", "ours"],
        default="simple",
        help="simple: direct paths, as plain Spark would (default); ours: the job's flatten",
    )
    args = parser.parse_args(argv)
    kinds: list[str] = args.kinds
    if len(kinds) != len(set(kinds)) or (len(kinds) > 1 and {"seed", "fetch"} & set(kinds)):
        parser.error("name each contender once; seed and fetch run alone")
    if kinds == ["fetch"]:  # `make bench` fetches before anything is timed
        for kind in BENCH_JARS:
            fetch_jars(kind)
        return 0
    settings_file = (args.config or conf.env_file("local")).resolve()
    resources = conf.load(settings_file).spark
    if kinds == ["seed"]:
        if not args.source or len(args.source) != len(args.warehouse):
            parser.error("seed takes one --warehouse per --source")
        from streaming.session import build_spark  # the job's own session: Hudi, its Spark settings

        spark = build_spark(resources, app_name="bench-seed")
        for source, warehouse in zip(args.source, args.warehouse, strict=True):
            target = str(Path(warehouse).resolve())
            rows = run_seed(spark, str(Path(source).resolve()), target, settings_file)
            event("rows", warehouse=target, rows=rows, keys=rows)
        spark.stop()
        return 0
    if len(args.source) != 1 or args.out is None:
        parser.error("contenders take one --source and an --out")
    source = str(Path(args.source[0]).resolve())
    out = args.out.resolve()
    spark = peer_session(kinds, out, resources, args.event_log)
    for kind in kinds:
        target = out / kind
        target.mkdir(parents=True, exist_ok=True)
        if kind == "plain":
            rows, keys = run_plain(spark, source, target, args.mapping)
        else:
            rows, keys = run_merge(spark, kind, source, target, args.max_files_per_trigger, args.mapping)
        event("rows", kind=kind, rows=rows, keys=keys, codec=_codec(spark, kind))
    spark.stop()
    return 0


def _codec(spark: SparkSession, kind: str) -> str:
    """The Parquet compression each contender used by default (they differ: part of what is measured)."""
    if kind == "iceberg":
        props = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {ICEBERG_TABLE}").collect()}
        return props.get("write.parquet.compression-codec", "zstd")
    return str(spark.conf.get("spark.sql.parquet.compression.codec"))


if __name__ == "__main__":
    sys.exit(main())
