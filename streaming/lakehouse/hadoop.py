"""Files through Spark's own Hadoop file system: the one place that reaches the JVM for them.

The checkpoint, Hudi's timeline and the local catalog live wherever the job's tables do (local disk, s3a://), so
they are read and written with the file system Spark already configured for that URI, credentials included.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streaming.config import is_remote

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def jvm(spark: SparkSession) -> Any:
    """The session's JVM gateway (typed Optional by pyspark; a live session always has one)."""
    gateway = spark._jvm
    if gateway is None:
        raise RuntimeError("the Spark session has no JVM (it was stopped)")
    return gateway


def filesystem(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    """The Hadoop FileSystem serving `uri` and the Path of it."""
    path = jvm(spark).org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark._jsc.hadoopConfiguration()), path


def exists(spark: SparkSession, uri: str) -> bool:
    fs, path = filesystem(spark, uri)
    return bool(fs.exists(path))


def read_text(spark: SparkSession, uri: str) -> str | None:
    """A file's text (UTF-8), None when it is not there."""
    fs, path = filesystem(spark, uri)
    if not fs.exists(path):
        return None
    stream = fs.open(path)
    try:
        return str(jvm(spark).org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()


def write_text(spark: SparkSession, uri: str, text: str) -> None:
    """Write a whole file: locally through a temporary file and a rename (a reader sees the old or the new one)."""
    data = text.encode("utf-8")
    if not is_remote(uri):
        target = Path(uri[len("file:") :] if uri.startswith("file:") else uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            with tmp.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return
    fs, path = filesystem(spark, uri)
    out = fs.create(path, True)
    try:
        out.write(bytearray(data))
    finally:
        out.close()


def list_status(spark: SparkSession, uri: str) -> list[Any]:
    """The FileStatus of each entry directly under `uri` (none when it is not there)."""
    fs, path = filesystem(spark, uri)
    return list(fs.listStatus(path)) if fs.exists(path) else []
