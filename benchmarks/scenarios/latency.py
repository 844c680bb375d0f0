"""latency: steady arrival at trigger 2 s and 10 s: land -> visible per file, each batch's steps."""

from __future__ import annotations

from benchmarks.scenarios.common import Bench, Figures, goal, steady


def latency(bench: Bench) -> Figures:
    """Steady arrival at each trigger interval: land -> visible p50/p95/max and each batch's steps."""
    triggers = bench.sizes.latency_triggers
    measured = bench.each(
        lambda t: steady(bench, f"latency-{t}s", trigger=t, seconds=bench.sizes.latency_seconds), triggers
    )
    runs = {f"trigger_{t}s": run for t, run in zip(triggers, measured, strict=True)}
    fast = runs[f"trigger_{min(bench.sizes.latency_triggers)}s"]
    return {
        "arrival": {
            "files_per_second": bench.sizes.arrival_per_second,
            "encounters_per_file": bench.sizes.arrival_per_file,
        },
        "runs": runs,
        "goals": [
            goal(
                f"p50 land->visible at trigger {fast['trigger_seconds']} s",
                fast["latency_p50_seconds"],
                5,
                at_most=True,
                valid=fast["valid"],
            ),
            goal(
                f"p95 land->visible at trigger {fast['trigger_seconds']} s",
                fast["latency_p95_seconds"],
                8,
                at_most=True,
                valid=fast["valid"],
            ),
            goal(
                f"batch p50 at trigger {fast['trigger_seconds']} s",
                fast["batch_seconds_p50"],
                2.5,
                at_most=True,
                valid=fast["valid"],
            ),
        ],
    }
