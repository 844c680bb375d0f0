"""Spark session factory: the Hudi settings Glue documents, resources from config, quiet by default."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from streaming.config import SparkConfig
from streaming.lakehouse import hadoop, jars

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Log4j 2 settings of a local driver: warnings stay, start-up lines nobody can act on go (shipped as package data).
LOG4J2_PROPERTIES = Path(__file__).resolve().with_name("log4j2.properties")

# Hudi sizes records with JOL, which probes two JVM attach mechanisms that need privileges a job does not have and
# then falls back to its own estimate; skipping the probes saves ~0.7 s per JVM and spares attaching to ourselves.
JOL_SKIP_PROBES = "-Djol.skipHotspotSAAttach=true -Djol.skipDynamicAttach=true"

# From the Hudi quick start and the AWS Glue Hudi guide; Glue 5.1 sets the same with `--datalake-formats hudi`.
HUDI_SPARK_CONF: dict[str, str] = {
    "spark.serializer": "org.apache.spark.serializer.KryoSerializer",
    "spark.sql.extensions": "org.apache.spark.sql.hudi.HoodieSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.hudi.catalog.HoodieCatalog",
    "spark.kryo.registrator": "org.apache.spark.HoodieSparkKryoRegistrar",
    # Timestamps are UTC end to end: FHIR offsets are normalised to UTC and partial dates start at UTC midnight.
    "spark.sql.session.timeZone": "UTC",
    # The mapping reads list elements as `x[0]`, null when the list is empty; ANSI mode (Spark 4's default) would
    # throw instead. Pinned so a platform default cannot change the mapping's meaning.
    "spark.sql.ansi.enabled": "false",
}

# The driver keeps every finished job, stage and SQL query in its status store (also with the UI off) up to these
# caps; of Spark's 1,000 each, jobs fill in ~5 minutes, SQL queries in ~35 (a batch is ~30 jobs, ~5 queries), so
# the heap grew for as long as a soak ran. Measured, live heap after a full GC at 1, 5 and 9 minutes of steady
# arrival: 109 -> 135 -> 174 MB with Spark's caps, 100 -> 121 -> 126 MB with these (docs/performance.md). Glue's
# Spark UI reads the event log, not this store.
RETENTION_CONF: dict[str, str] = {
    "spark.ui.retainedJobs": "100",
    "spark.ui.retainedStages": "100",
    "spark.ui.retainedTasks": "10000",
    "spark.sql.ui.retainedExecutions": "50",
}
# What the job's session sets, locally and on Glue (deploy/template.json passes the same as `--conf`).
JOB_SPARK_CONF: dict[str, str] = {**HUDI_SPARK_CONF, **RETENTION_CONF}


def s3a_conf(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Point s3a at AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL when set (moto locally), as boto3 does, in the region
    every AWS client uses (aws.resolve_region)."""
    from streaming.adapters import aws

    env = os.environ if environ is None else environ
    conf = {
        # Glue 5.1 serves s3:// through S3A; do the same locally so URIs mean the same thing in both places.
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    }
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        conf |= {
            "spark.hadoop.fs.s3a.endpoint": endpoint,
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": str(endpoint.startswith("https")).lower(),
            # An S3 stand-in has no ETag/version semantics nor multi-object delete worth trusting (moto#4564).
            "spark.hadoop.fs.s3a.change.detection.mode": "none",
            "spark.hadoop.fs.s3a.multiobjectdelete.enable": "false",
        }
    if region := aws.resolve_region(environ=env):
        conf["spark.hadoop.fs.s3a.endpoint.region"] = region
    return conf


def build_spark(config: SparkConfig, app_name: str = "bronze-encounter") -> SparkSession:
    """Start (or reuse) a local Spark session with Hudi and s3a on the classpath."""
    from pyspark.sql import SparkSession

    # Python workers must run this interpreter (the venv), not whatever `python3` is first on PATH;
    # pyspark reads the variable when the SparkContext starts.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(config.master)
        .config("spark.driver.memory", config.driver_memory)
        .config("spark.sql.shuffle.partitions", str(config.shuffle_partitions))
        .config("spark.ui.enabled", str(config.ui).lower())
        .config("spark.ui.showConsoleProgress", "false")
    )
    settings = {**JOB_SPARK_CONF, **s3a_conf(), **config.conf}
    quiet = config.quiet and config.master.startswith("local")
    paths = [str(p) for p in jars.local_jars()]
    if not config.master.startswith("local"):  # a cluster's executors fetch the jars from the driver
        builder = builder.config("spark.jars", ",".join(paths))
    else:
        # One JVM runs driver and executors: the jars go on its class path as they are. Through spark.jars the
        # executor copies all 375 MB of them into a temp folder at every start (~1.2 s; a killed job leaves it).
        builder = builder.config("spark.driver.extraClassPath", os.pathsep.join(paths))
        # Bind to loopback: sandboxes and CI runners often resolve their hostname to an address nobody routes.
        builder = builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
        # Said up front, Spark need not warn that the hostname resolves to loopback (it binds there anyway).
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if quiet:  # the user's own spark.driver.extraJavaOptions come last, so they win
        own = f"-Dlog4j.configurationFile={LOG4J2_PROPERTIES.as_uri()} {JOL_SKIP_PROBES}"
        settings["spark.driver.extraJavaOptions"] = f"{own} {settings.get('spark.driver.extraJavaOptions', '')}".strip()
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(config.log_level)
    if quiet:
        _init_jol_silently(spark)
    return spark


def _init_jol_silently(spark: SparkSession) -> None:
    """Initialise Hudi's JOL once with System.out muted: it prints its failed probes there, unconditionally.

    JOL keeps one instance per JVM, so the later calls from Hudi's writes print nothing. Its lines would otherwise
    land on the process's stdout, in the middle of the job's own output.
    """
    jvm = hadoop.jvm(spark)
    system = jvm.java.lang.System
    out = system.out
    try:
        system.setOut(jvm.java.io.PrintStream(jvm.org.apache.commons.io.output.NullOutputStream.INSTANCE))
        jvm.org.apache.hudi.org.openjdk.jol.vm.VM.current()
    except Exception:  # another Hudi build without a shaded JOL: nothing to initialise
        pass
    finally:
        system.setOut(out)
