"""The JVM jars a local Spark needs, fetched once from Maven Central into a cache outside git.

On AWS Glue 5.1 none of this runs: Glue ships Hudi 1.0.2 (`--datalake-formats hudi`) and its own S3 connector.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MAVEN_CENTRAL = "https://repo1.maven.org/maven2"


@dataclass(frozen=True)
class Jar:
    """One Maven artifact pinned by version and by the SHA-1 Maven Central publishes for it."""

    group: str
    artifact: str
    version: str
    sha1: str

    @property
    def file_name(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    @property
    def url(self) -> str:
        return f"{MAVEN_CENTRAL}/{self.group.replace('.', '/')}/{self.artifact}/{self.version}/{self.file_name}"


# hadoop-aws must match the Hadoop client pyspark 3.5.6 bundles (3.3.4); it needs exactly this SDK bundle.
JARS: tuple[Jar, ...] = (
    Jar("org.apache.hudi", "hudi-spark3.5-bundle_2.12", "1.0.2", "0e0710389fb2a6585d5a7f3bc00977dd15c0e861"),
    Jar("org.apache.hadoop", "hadoop-aws", "3.3.4", "a65839fbf1869f81a1632e09f415e586922e4f80"),
    Jar("com.amazonaws", "aws-java-sdk-bundle", "1.12.262", "02deec3a0ad83d13d032b1812421b23d7a961eea"),
)


class JarsMissing(RuntimeError):
    """The jar cache does not hold the pinned jars; `make demo`/`make test` (or `python -m streaming.lakehouse.jars`)
    fetches them."""


def cache_root() -> Path:
    """The project's folder in the user's XDG cache, shared by every clone on a machine (jars, derived schemas)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bronze-encounter"


def cache_dir() -> Path:
    """Where jars live: $BRONZE_JAR_CACHE, else the XDG cache, so every clone on a machine shares them."""
    explicit = os.environ.get("BRONZE_JAR_CACHE")
    return Path(explicit) if explicit else cache_root() / "jars"


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class JarChecksumMismatch(RuntimeError):
    """A downloaded jar's SHA-1 differs from the one pinned for it (nothing is kept)."""


def download(jar: Jar, directory: Path | None = None) -> Path:
    """Put one pinned jar into the cache unless it is there (SHA-1 checked); return its path.

    Also for jars outside JARS (the benchmarks' Delta and Iceberg), so every jar lands in one cache the same way.
    """
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / jar.file_name
    if target.exists():
        return target
    # Download next to the target and rename, so an interrupted fetch never leaves a truncated jar.
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{jar.file_name}.")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        print(f"fetching {jar.url}", file=sys.stderr)
        urllib.request.urlretrieve(jar.url, tmp)
        actual = _sha1(tmp)
        if actual != jar.sha1:
            raise JarChecksumMismatch(f"{jar.file_name}: SHA-1 {actual} does not match pinned {jar.sha1}")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def fetch(directory: Path | None = None) -> list[Path]:
    """Download every missing jar, verify its SHA-1 and return all jar paths."""
    return [download(jar, directory) for jar in JARS]


def local_jars(directory: Path | None = None) -> list[Path]:
    """Return the cached jar paths, failing clearly when set-up has not fetched them."""
    directory = directory or cache_dir()
    paths = [directory / jar.file_name for jar in JARS]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise JarsMissing(f"jars not in {directory}: {', '.join(missing)}; run `make jars`")
    return paths


if __name__ == "__main__":
    for p in fetch():
        print(p)
