"""The local Spark session: Hudi and s3a on the driver's class path, nothing copied per start."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from streaming.lakehouse import jars


@pytest.mark.spark
def test_local_session_loads_the_jars_in_place_without_copying_them(spark: Any) -> None:
    from pyspark import SparkFiles

    class_path = spark.sparkContext.getConf().get("spark.driver.extraClassPath").split(os.pathsep)
    assert class_path == [str(p) for p in jars.local_jars()]
    # Through spark.jars the executor would fetch every jar (375 MB) into the SparkFiles folder at each start.
    assert spark.sparkContext._jsc.sc().listJars().isEmpty()
    assert sorted(p.name for p in Path(SparkFiles.getRootDirectory()).iterdir() if p.suffix == ".jar") == []
    # ...and the classes are there all the same: Hudi's data source and s3a's file system resolve.
    jvm = spark._jvm
    loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
    for name in ("org.apache.hudi.DefaultSource", "org.apache.hadoop.fs.s3a.S3AFileSystem"):
        assert jvm.java.lang.Class.forName(name, False, loader).getName() == name


@pytest.mark.spark
def test_the_driver_keeps_a_bounded_history_of_finished_jobs_and_queries(spark: Any) -> None:
    """A stream runs for days: its status store must stop growing after the caps, not after Spark's 1,000."""
    from streaming.lakehouse.session import RETENTION_CONF

    jobs_cap = int(RETENTION_CONF["spark.ui.retainedJobs"])
    queries_cap = int(RETENTION_CONF["spark.sql.ui.retainedExecutions"])
    for i in range(max(jobs_cap, queries_cap) + 20):
        spark.range(i + 1).count()  # one SQL query, one job (more while the session is young)
    tracker = spark.sparkContext.statusTracker()
    jobs = tracker.getJobIdsForGroup(None)
    # Cleaning runs once the count passes the cap, removing max(cap / 10, ...) at a time.
    assert 0 < len(jobs) <= jobs_cap
    store = spark._jsparkSession.sharedState().statusStore()
    assert 0 < store.executionsCount() <= queries_cap
