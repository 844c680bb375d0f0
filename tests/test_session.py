"""The local Spark session: Hudi and s3a on the driver's class path, nothing copied per start."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from streaming import jars


@pytest.mark.slow
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
