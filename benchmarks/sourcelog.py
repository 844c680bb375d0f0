"""What the job's source-log read costs on a compaction batch (every 10th), against reading the whole history.

    python -m benchmarks.sourcelog --entries 100000 [--repeat 5]

Writes a file-source log (`sources/0`, Spark's own text format) whose batches 0..8 hold `entries` files between
them and whose batch 9 is the compaction (`9.compact`: every entry so far plus batch 9's own), as a stream that
logged that many files leaves it. Then times, in one JVM, the job's read of batch 9 (`source_log.batch_entries`:
the range call, filtered in the JVM) against the read it replaced (the single-id `get`, which returns the whole
compacted history, filtered in Python over Py4J). Prints one JSON line (`event`: `sourcelog`) on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BATCHES = 10  # Spark's default compact interval: batch 9 is the first compaction


def write_log(root: Path, entries: int, per_last_batch: int) -> Path:
    """A `sources/0` folder: `entries` files over batches 0..8, then `9.compact` with them and batch 9's own."""
    log = root / "sources" / "0"
    log.mkdir(parents=True)
    per_batch = max(1, entries // (BATCHES - 1))
    lines: list[str] = []
    for batch in range(BATCHES):
        count = per_last_batch if batch == BATCHES - 1 else per_batch
        own = [
            json.dumps({"path": f"file:///landing/b{batch}/f{i:07d}.ndjson", "timestamp": 1_700_000_000_000 + i,
                        "batchId": batch})
            for i in range(count)
        ]  # fmt: skip
        lines += own
        name = f"{batch}.compact" if batch == BATCHES - 1 else str(batch)
        (log / name).write_text("v1\n" + "\n".join(lines if batch == BATCHES - 1 else own) + "\n")
    return log


def _whole_history(log: Any, batch_id: int) -> list[Any]:
    """The read the job did before: the single-id `get`, every entry filtered on the Python side."""
    found = log.get(batch_id)
    return [e for e in found.get() if e.batchId() == batch_id] if found.isDefined() else []


def _best(action: Callable[[], list[Any]], repeat: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        size = len(action())
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 4), size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000, help="files logged before the compaction batch")
    parser.add_argument("--last", type=int, default=500, help="files of the compaction batch itself")
    parser.add_argument("--repeat", type=int, default=3, help="reads of each kind; the median is reported")
    parser.add_argument("--workdir", type=Path, default=None, help="where the log is written (default: a temp dir)")
    args = parser.parse_args(argv)

    from streaming import config as conf
    from streaming.lakehouse.session import build_spark
    from streaming.lakehouse.source_log import batch_entries

    spark = build_spark(conf.JobConfig().spark)
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
        log_dir = write_log(Path(scratch), args.entries, args.last)
        jvm: Any = spark._jvm
        log = jvm.org.apache.spark.sql.execution.streaming.FileStreamSourceLog(1, spark._jsparkSession, str(log_dir))
        last = BATCHES - 1
        whole_s, whole_n = _best(lambda: _whole_history(log, last), args.repeat)
        ours_s, ours_n = _best(lambda: batch_entries(log, last), args.repeat)
    spark.stop()
    print(
        json.dumps(
            {
                "event": "sourcelog",
                "entries_logged": args.entries,
                "batch_entries": ours_n,
                "whole_history_entries": whole_n,
                "whole_history_seconds": whole_s,
                "range_seconds": ours_s,
                "speedup": round(whole_s / ours_s, 1) if ours_s else None,
            }
        ),
        flush=True,
    )
    return 0 if ours_n == whole_n == args.last else 1


if __name__ == "__main__":
    raise SystemExit(main())
