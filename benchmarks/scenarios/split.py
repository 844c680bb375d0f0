"""split: the Python reader alone vs a bare `json.loads` per line (no JVM)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from benchmarks.scenarios.common import Bench, Figures
from streaming.generate import generate


def split(bench: Bench) -> Figures:
    """The job's Python reader (FileSplitter) vs a bare `json.loads` per line over generated NDJSON."""
    import io

    from streaming.config import FhirConfig
    from streaming.fhir.parse import FileSplitter

    root = bench.fresh("split")
    data = b"".join(
        p.read_bytes() for p in generate(root, files=3, per_file=bench.sizes.backfill_per_file // 4 or 1, seed=5).files
        if p.suffix == ".ndjson"
    )  # fmt: skip
    splitter = FileSplitter(FhirConfig())

    def ours() -> int:
        return sum(1 for r in splitter.split(io.BytesIO(data), len(data)) if r.kind == "resource")

    def baseline() -> int:
        return sum(1 for line in data.splitlines() if line.strip() and json.loads(line))

    def best(fn: Callable[[], int]) -> tuple[float, int]:
        times, result = [], 0
        for _ in range(3):
            start = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - start)
        return min(times), result

    (base_s, base_n), (ours_s, ours_n) = best(baseline), best(ours)
    return {
        "records": ours_n,
        "baseline_records": base_n,
        "ours_seconds": round(ours_s, 4),
        "baseline_seconds": round(base_s, 4),
        "ratio": round(ours_s / base_s, 3),
        "goals": [],
    }
