"""The benchmark scenarios: each generates its data (streaming/generate.py), runs whole processes, returns figures.

Scenarios answer docs/performance.md's questions; each returns plain data (the `results.json` entry) and goals:

- backfill: ours (`bronze-encounter run --once`) vs plain Spark Parquet, Delta Lake and Iceberg on the same files,
  each peer with a simple mapping and with the job's own read and mapping (like for like);
- latency:  steady arrival at trigger 2 s and 10 s: land -> visible per file, each batch's steps;
- upsert:   batches of updates (some moving hospital) into a small and a large table;
- listing:  triggers and a restart over a prefix of many already-ingested files vs few, with the deploy's settings
            (source_archive), and the many again without it;
- soak:     steady arrival for a long time: driver memory, files per partition, file size, batch time;
- split:    the Python reader alone vs a bare `json.loads` per line (no JVM);
- read:     the read step's profile on the backfill's files: cold, warm, and each projection of flatten.
- query_scale: `query` on a large table, a point lookup and a one-hospital count, the streamed query path
  against the one before it (benchmarks/query_scale.py).
- views:    the bulk export in one stream with encounter alone and with every shipped view: each view's cost.

Each scenario is a module of this package (benchmarks/scenarios/<name>.py) that imports only common.py: the sizes
(Sizes), the run (Bench), goal() and the helpers they share.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.scenarios import (
    backfill,
    latency,
    listing,
    query_scale,
    read,
    soak,
    sourcelog,
    split,
    upsert,
    views,
)
from benchmarks.scenarios.common import Bench, Figures, Sizes

__all__ = ["SCENARIOS", "Bench", "Sizes"]


SCENARIOS: dict[str, Callable[[Bench], Figures]] = {
    "split": split.split,
    "read": read.read,
    "backfill": backfill.backfill,
    "latency": latency.latency,
    "upsert": upsert.upsert,
    "listing": listing.listing,
    "soak": soak.soak,
    "sourcelog": sourcelog.sourcelog,
    "query_scale": query_scale.query_scale,
    "views": views.views,
}
