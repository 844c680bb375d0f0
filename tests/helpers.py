"""Small helpers shared by the tests: read tables back, copy sample files, the documented partition rule."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from streaming import config as conf
from streaming.bronze.flatten import UNKNOWN_HOSPITAL_PARTITION


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


# -- the hospital_partition rule as documented (docs/design.md, "Partitions"), for test_flatten and test_partitions

HUDI_ESCAPED = set("\"#%'*/:=?[\\]^{")  # characters Hudi's partition-path URL encoding writes as %XX


def expected_partition(name: str | None) -> str:
    """The documented hospital_partition rule, re-implemented in Python."""
    if name is None or name.strip() == "":
        return UNKNOWN_HOSPITAL_PARTITION
    printable = all(" " <= c <= "~" for c in name)
    encoded_length = len(name) + 2 * sum(c in HUDI_ESCAPED for c in name)
    edges_ok = name == name.strip(" ") and name not in (".", "..") and not name.startswith("__")
    if printable and edges_ok and encoded_length <= 100:
        return name
    prefix = "".join(c if " " <= c <= "~" else "_" for c in name[:40]).strip(" ")
    return f"{prefix}~{hashlib.sha256(name.encode()).hexdigest()[:16]}"


# Hospital names every partition test uses: the brief's list plus the edges of the rule.
PARTITION_NAMES: tuple[str | None, ...] = (
    "/",
    "a/b",
    "..",
    ".",
    "=",
    "a=b",
    "%",
    "%2F",
    "é",
    "東京",
    "🏥 Hospital",
    "x" * 500,
    "",
    "   ",
    None,
    "/" * 33,  # 99 characters once encoded: still the name
    "/" * 34,  # 102: derived
    "/" * 100,  # 300 once encoded: over the 255-byte folder limit if it were the name
    "A" * 100,
    "A" * 101,
    "St. Mary's Hospital",
    " Leading space",
    "Trailing space ",
    "tab\there",
    "\u00a0",  # a no-break space alone is blank too
    "__HIVE_DEFAULT_PARTITION__",  # as a folder, read back as a null partition value
    UNKNOWN_HOSPITAL_PARTITION,  # a hospital really called that does not share the missing names' partition
    "default",
    "東京" * 150,  # 900 bytes of UTF-8
)


def table_marker(config: conf.JobConfig, name: str) -> None:
    """Make the warehouse hold table `name` as far as `query`/`status` ask (its .hoodie/hoodie.properties), without
    data: a warehouse holding none of the tables is refused as a mistyped path."""
    properties = Path(config.table_uri(name)) / ".hoodie" / "hoodie.properties"
    properties.parent.mkdir(parents=True, exist_ok=True)
    properties.write_text(f"hoodie.table.name={name}\n")


def files_scanned(df: Any) -> tuple[int, list[Any]]:
    """How many files the scans of `df` read (Spark's `numFiles` metric of each file scan, after Hudi's pruning),
    and its rows: `df` is collected once and its executed plan's metrics read."""
    rows = df.collect()
    plan = df._jdf.queryExecution().executedPlan()
    if plan.nodeName() == "AdaptiveSparkPlan":
        plan = plan.executedPlan()
    leaves = plan.collectLeaves()
    metrics = [leaves.apply(i).metrics() for i in range(leaves.size())]
    return sum(int(m.apply("numFiles").value()) for m in metrics if m.contains("numFiles")), rows
