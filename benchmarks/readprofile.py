"""Where the read step's time goes, in one process with the job's own session and settings.

    python -m benchmarks.readprofile --source DIR [--config FILE] [--repeat N]

The batch's read (split in Python, `flatten`, the cache, the statistics) is timed cold (the first, as a backfill's
one batch) and warm (the median of N more). Then, over the split records held in memory, so the Python split is
not in them: the records alone, the records plus `from_json` alone, and `flatten` built up one projection at a
time. Every figure forces every column it names (a hash over them), since Spark drops what nothing reads. Prints
one JSON line (`event`: `profile`) on stdout. The README's "Where a backfill's read goes" comes from this.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streaming import config as conf

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _median(action: Callable[[], object], repeat: int) -> float:
    return round(statistics.median(_timed(action) for _ in range(repeat)), 3)


def _forced(df: DataFrame) -> Callable[[], object]:
    """An action that computes every column of `df`: a hash over all of them, summed (maps only pass through)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import MapType

    columns = [F.col(f"`{f.name}`") for f in df.schema.fields if not isinstance(f.dataType, MapType)]
    return lambda: df.agg(F.sum(F.hash(*columns).cast("long"))).collect()


def profile(source: Path, settings_file: Path, repeat: int) -> dict[str, Any]:
    from pyspark import SparkContext
    from pyspark.sql import functions as F

    from streaming.bronze.flatten import _projections, flatten, parse_resource
    from streaming.bronze.records import read_records
    from streaming.lakehouse.session import build_spark
    from streaming.pipeline.read import aggregate
    from streaming.pipeline.reingest import landed_file

    config = conf.load(settings_file, {"source": str(source)})  # the landing prefix, as the job has it
    spark = build_spark(config.spark, app_name="bench-readprofile")
    fhir = config.fhir
    files = [landed_file(f"file:{p}") for p in sorted(source.rglob("*")) if p.is_file()]  # as the stream lists them

    def flat(records: DataFrame) -> DataFrame:  # with the job's fhir settings, as read._read calls it
        return flatten(
            records,
            ingested_at=datetime.now(UTC),
            keep_resource_json=fhir.keep_resource_json,
            raw_slice_chars=fhir.raw_slice_chars,
            future_tolerance_hours=fhir.future_tolerance_hours,
            key_scope=config.key_scope,
            source=config.source,
        )

    def batch_read() -> int:  # as read._read and the statistics do it
        rows = flat(read_records(spark, files, fhir)).persist()
        try:
            return aggregate(rows).rows_in
        finally:
            rows.unpersist()

    cold = _timed(batch_read)
    warm = _median(batch_read, repeat)
    split = read_records(spark, files, fhir)
    split_seconds = _median(lambda: split.agg(F.sum(F.length("resource_json"))).collect(), repeat)

    records = split.persist()
    rows = records.count()
    scan = _median(_forced(records), repeat)
    from_json = _median(_forced(records.select(parse_resource().alias("r"))), repeat)
    steps = []
    out = records
    # The same projections flat() runs, built with the same settings (the key scope's among them since 237876b).
    projections = _projections(
        SparkContext._active_spark_context,
        fhir.keep_resource_json,
        fhir.raw_slice_chars,
        fhir.future_tolerance_hours,
        config.key_scope,
        config.source,
    )
    for number, step in enumerate(projections, 1):
        out = out.select(*step)
        steps.append({"step": number, "columns": len(step), "seconds": _median(_forced(out), repeat)})
    flattened = flat(records)

    def fill_cache() -> None:
        kept = flattened.persist()
        kept.count()
        kept.unpersist()

    fill = _median(fill_cache, repeat)
    records.unpersist()
    spark.stop()
    return {
        "files": len(files),
        "records": rows,
        "read_cold_seconds": round(cold, 3),
        "read_warm_seconds": warm,
        "split_seconds": split_seconds,
        "records_scan_seconds": scan,
        "from_json_seconds": from_json,
        "flatten_steps": steps,  # cumulative: step N's seconds include steps 1..N and the scan
        "flatten_and_cache_seconds": fill,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="folder of files to read (e.g. generated ones)")
    parser.add_argument("--config", type=Path, help="settings file (default: checkpoints_conf/local.toml)")
    parser.add_argument("--repeat", type=int, default=3, help="warm timings per figure; the median is kept")
    args = parser.parse_args(argv)
    settings_file = (args.config or conf.env_file("local")).resolve()
    figures = profile(args.source.resolve(), settings_file, max(1, args.repeat))
    print(json.dumps({"event": "profile", "at": time.time(), **figures}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
