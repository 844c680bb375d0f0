"""Small helpers shared by the integration tests: read tables back, copy sample files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from streaming import config as conf


def job_config(tmp_path: Path, source: Path | str, **overrides: Any) -> conf.JobConfig:
    """A local job config whose warehouse, checkpoint and ledger all live under `tmp_path`."""
    flat = {"source": str(source), "warehouse": str(tmp_path / "warehouse"), "trigger_interval": "1 second"}
    flat.update(overrides)
    return conf.load(conf.env_file("local"), flat)


def read_table(spark: Any, uri: str) -> list[dict[str, Any]]:
    """All rows of a Hudi table as dicts (snapshot read through Spark)."""
    return [row.asDict(recursive=True) for row in spark.read.format("hudi").load(uri).collect()]


def copy_samples(samples: Path, landing: Path, *, bundles: bool = True) -> list[Path]:
    """Copy the Synthea NDJSON (and bundles) into a landing folder, as a feed would drop them."""
    landing.mkdir(parents=True, exist_ok=True)
    sources = [samples / "encounters.ndjson"]
    if bundles:
        sources += sorted((samples / "bundles").glob("*.json"))
    return [Path(shutil.copy(src, landing / src.name)) for src in sources]
