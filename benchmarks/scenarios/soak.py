"""soak: steady arrival into a seeded table for a long time: driver memory, layout, the slowest batch."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from benchmarks.scenarios.common import Bench, Figures, goal, percentile, steady

# The slowest batch of the soak against its median batch: table services (clean, clustering, the metadata table's
# compaction) land in single batches, and none may stall the stream for long.
SLOWEST_BATCH_GOAL = 3.0


def soak(bench: Bench) -> Figures:
    """A long steady arrival into a table seeded with `soak_seed_rows` encounters, clustering on during it: driver
    memory (live heap after a full GC) over time, table layout over time, the slowest batch and what ran in it."""
    sizes = bench.sizes
    run = steady(
        bench,
        "soak",
        trigger=sizes.soak_trigger,
        seconds=sizes.soak_seconds,
        sample_every=sizes.soak_sample_seconds,
        seed_rows=sizes.soak_seed_rows,
        overrides={"layout.cluster_every_seconds": str(sizes.soak_cluster_every_seconds)},
    )
    heap = [(m["t"], m["heap_after_gc_mb"]) for m in run["memory"]]
    growth = _growth(heap)
    batches = run["batches"]
    batch_seconds = [b["seconds"] for b in batches]
    third = max(1, len(batch_seconds) // 3)
    ranked = sorted(batches, key=lambda b: -b["seconds"])
    median = run["batch_seconds_p50"]  # the p50 the results show beside the ratio
    ratio = round(ranked[0]["seconds"] / median, 2) if ranked and median else None
    services = [s for b in batches for s in b["services"]]
    return {
        **{k: v for k, v in run.items() if k not in ("latencies",)},
        "seconds": sizes.soak_seconds,
        "heap_growth": growth,
        "heap_growth_median": _growth(heap, statistics.median),
        "batch_seconds_first_third_p50": percentile(batch_seconds[:third], 50),
        "batch_seconds_last_third_p50": percentile(batch_seconds[-third:], 50),
        "slowest_batches": ranked[:5],  # with their steps and services
        "slowest_batch_ratio": ratio,
        "services_run": {name: services.count(name) for name in sorted(set(services))},
        "goals": [
            goal(
                "driver live heap change over the soak (lowest per quarter, absolute fraction)",
                None if growth is None else abs(growth),
                0.10,
                at_most=True,
            ),
            goal("slowest batch / median batch", ratio, SLOWEST_BATCH_GOAL, at_most=True),
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
