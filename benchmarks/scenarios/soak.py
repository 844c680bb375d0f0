"""soak: steady arrival for a long time: driver memory, files per partition, file size, batch time."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from benchmarks.scenarios.common import Bench, Figures, _steady_run, goal, percentile


def soak(bench: Bench) -> Figures:
    """A long steady arrival: driver memory (live heap after a full GC) over time, table layout over time."""
    sizes = bench.sizes
    run = _steady_run(
        bench, "soak", trigger=sizes.soak_trigger, seconds=sizes.soak_seconds, sample_every=sizes.soak_sample_seconds
    )
    heap = [(m["t"], m["heap_after_gc_mb"]) for m in run["memory"]]
    growth = _growth(heap)
    batch_seconds = [b["seconds"] for b in run["batches"]]
    third = max(1, len(batch_seconds) // 3)
    return {
        **{k: v for k, v in run.items() if k not in ("latencies",)},
        "seconds": sizes.soak_seconds,
        "heap_growth": growth,
        "heap_growth_median": _growth(heap, statistics.median),
        "batch_seconds_first_third_p50": percentile(batch_seconds[:third], 50),
        "batch_seconds_last_third_p50": percentile(batch_seconds[-third:], 50),
        "goals": [
            goal(
                "driver live heap change over the soak (lowest per quarter, absolute fraction)",
                None if growth is None else abs(growth),
                0.10,
                at_most=True,
            )
        ],
    }


def _growth(samples: list[tuple[float, float]], pick: Callable[[list[float]], float] = min) -> float | None:
    """Relative change of the live heap, the last quarter's against the second's (after warm-up).

    `pick` chooses each quarter's figure. The goal uses the lowest (`min`): a sample taken while a batch runs holds
    that batch's data even after a full GC (samples ranged 99-669 MB), so the floor is what a leak would raise.
    The median, the metric before 2026-11-27, is still reported (`heap_growth_median`).
    """
    if len(samples) < 2:
        return None
    end = samples[-1][0] or 1.0
    early = [v for t, v in samples if end * 0.25 <= t < end * 0.5] or [samples[0][1]]
    late = [v for t, v in samples if t >= end * 0.75] or [samples[-1][1]]
    return round(pick(late) / pick(early) - 1, 4)
