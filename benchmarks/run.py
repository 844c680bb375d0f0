"""Throughput benchmarks, each a ratio against a baseline measured in the same run on the same data.

    python -m benchmarks.run [--files 40 --per-file 100 --repeat 3 --only split,pipeline,index]

Machines here have 2 noisy cores, so absolute seconds mean little; the ratios are what to watch:

- split:    FileSplitter over NDJSON vs a bare `json.loads` per line (the floor for any Python reader);
- pipeline: the whole job (`run --once`: ledger, split, flatten, quarantine, Hudi, log) vs the shortest path
            Spark offers for the same NDJSON (`spark.read.json` + the same Hudi upsert);
- index:    successive upsert batches into a growing table with GLOBAL_SIMPLE (our choice: partition moves) vs
            SIMPLE (partition-scoped; cannot move rows) as baseline.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streaming import config as conf
from streaming.config import FhirConfig
from streaming.generate import generate
from streaming.parse import FileSplitter

SYNTHEA = Path(__file__).resolve().parents[2] / "shared" / "fhir-samples" / "synthea" / "encounters.ndjson"


def _best(fn: Callable[[], Any], repeat: int) -> float:
    """Best of `repeat` wall-clock timings: the least disturbed by the other processes on the machine."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_split(data: bytes, repeat: int) -> dict[str, Any]:
    splitter = FileSplitter(FhirConfig())

    def ours() -> int:
        return sum(1 for r in splitter.split(io.BytesIO(data), len(data)) if r.kind == "resource")

    def baseline() -> int:
        return sum(1 for line in data.splitlines() if line.strip() and json.loads(line))

    assert ours() == baseline()
    base, mine = _best(baseline, repeat), _best(ours, repeat)
    return {"bench": "split", "records": baseline(), "baseline_s": base, "ours_s": mine, "ratio": mine / base}


def _ndjson_only(landing: Path) -> None:
    for path in landing.glob("*.json"):
        path.unlink()  # the baseline's line-mode JSON reader cannot read pretty files; compare like with like


def bench_pipeline(spark: Any, files: int, per_file: int, repeat: int, work: Path) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from streaming import job
    from streaming.hudi import HudiWriter, encounter_table

    landing = work / "landing"
    generate(landing, files=files, per_file=per_file, seed=1)
    _ndjson_only(landing)
    records = sum(1 for p in landing.iterdir() for line in p.read_text().splitlines() if line.strip())

    def ours() -> None:
        shutil.rmtree(work / "wh-ours", ignore_errors=True)
        config = conf.load(conf.env_file("local"), {"source": str(landing), "warehouse": str(work / "wh-ours")})
        summary = job.run(config, once=True, spark=spark)
        assert summary.rows_written == records

    def baseline() -> None:
        shutil.rmtree(work / "wh-base", ignore_errors=True)
        config = conf.load(conf.env_file("local"), {"source": str(landing), "warehouse": str(work / "wh-base")})
        df = spark.read.json(str(landing)).select(
            F.col("id").alias("encounter_id"),
            "status",
            F.col("serviceProvider.display").alias("hospital_name"),
            F.col("serviceProvider.display").alias("hospital_partition"),
            F.to_timestamp("period.start").alias("admission_time"),
            F.to_timestamp("meta.lastUpdated").alias("precombine_ts"),
        )
        HudiWriter(spark).upsert(encounter_table(config), df, {})

    base, mine = _best(baseline, repeat), _best(ours, repeat)
    return {"bench": "pipeline", "records": records, "baseline_s": base, "ours_s": mine, "ratio": mine / base}


def bench_index(spark: Any, files: int, per_file: int, batches: int, work: Path) -> dict[str, Any]:
    from streaming.flatten import BRONZE_COLUMNS, flatten
    from streaming.hudi import HudiWriter, TableSpec, encounter_table
    from streaming.records import LandedFile, read_records

    landing = work / "index-landing"
    generated = generate(landing, files=files, per_file=per_file, seed=2)
    paths = list(generated.files)
    per_batch = max(1, len(paths) // batches)
    writer = HudiWriter(spark)
    config = conf.load(conf.env_file("local"), {"warehouse": str(work / "wh-index")})

    def run(index: str) -> float:
        base = encounter_table(config)
        spec = TableSpec(
            f"{base.name}_{index.lower()}",
            f"{base.uri}_{index.lower()}",
            base.record_key,
            base.precombine,
            base.partition,
            {**base.options, "hoodie.index.type": index},
        )
        total = 0.0
        for i in range(batches):
            chunk = paths[i * per_batch : (i + 1) * per_batch]
            landed = [LandedFile(f"file:{p}", p.stat().st_size, _mtime(p)) for p in chunk]
            rows = flatten(read_records(spark, landed, FhirConfig()), ingested_at=_mtime(chunk[0])).where(
                "kind = 'resource'"
            )
            df = rows.select(*BRONZE_COLUMNS, "_hoodie_is_deleted").cache()
            df.count()  # materialise outside the timing: only the Hudi write is measured
            start = time.perf_counter()
            writer.upsert(spec, df, {})
            total += time.perf_counter() - start
            df.unpersist()
        return total

    base, mine = run("SIMPLE"), run("GLOBAL_SIMPLE")
    return {"bench": "index", "records": len(generated.encounter_ids), "baseline_s": base, "ours_s": mine,
            "ratio": mine / base}  # fmt: skip


def _mtime(path: Path) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--per-file", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="split,pipeline,index")
    args = parser.parse_args(argv)
    wanted = set(args.only.split(","))
    results = []
    if "split" in wanted:
        data = SYNTHEA.read_bytes() if SYNTHEA.exists() else b""
        if data:
            results.append(bench_split(data, args.repeat))
    if wanted & {"pipeline", "index"}:
        from streaming.session import build_spark

        spark = build_spark(conf.load(conf.env_file("local")).spark)
        with tempfile.TemporaryDirectory(prefix="bronze-bench-") as tmp:
            if "pipeline" in wanted:
                results.append(bench_pipeline(spark, args.files, args.per_file, args.repeat, Path(tmp)))
            if "index" in wanted:
                results.append(bench_index(spark, args.files, args.per_file, 4, Path(tmp)))
    print(f"{'bench':10} {'records':>8} {'baseline s':>11} {'ours s':>8} {'ratio':>6}")
    for r in results:
        print(f"{r['bench']:10} {r['records']:8d} {r['baseline_s']:11.2f} {r['ours_s']:8.2f} {r['ratio']:6.2f}")
    print(f"median ratio {statistics.median(r['ratio'] for r in results):.2f}" if results else "nothing run")
    return results


if __name__ == "__main__":
    main()
