"""The benchmarks still run (tiny sizes, no timing asserted: timing goals live in benchmarks/, not in tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import run


def test_split_benchmark_counts_the_same_records_as_its_baseline(samples: Path) -> None:
    result = run.bench_split((samples / "encounters.ndjson").read_bytes(), repeat=1)
    assert result["records"] == 3927
    assert result["ratio"] > 0


@pytest.mark.slow
def test_pipeline_and_index_benchmarks_run(spark: Any, tmp_path: Path) -> None:
    pipeline = run.bench_pipeline(spark, files=4, per_file=5, repeat=1, work=tmp_path)
    index = run.bench_index(spark, files=4, per_file=5, batches=2, work=tmp_path)
    assert pipeline["records"] == 3 * 5  # file index 3 is a single pretty resource, dropped for the baseline
    assert index["records"] == 3 * 5 + 1
    assert pipeline["ours_s"] > 0 and index["ours_s"] > 0
