"""sourcelog: a compaction batch's source-log read at many logged files (benchmarks/sourcelog.py)."""

from __future__ import annotations

from benchmarks import procs
from benchmarks.scenarios.common import Bench, Figures


def sourcelog(bench: Bench) -> Figures:
    """A compaction batch's source-log read at `sourcelog_entries` logged files, one process (benchmarks/sourcelog)."""
    root = bench.fresh("sourcelog")
    entries = bench.sizes.sourcelog_entries
    done = bench.run(
        procs.python("-m", "benchmarks.sourcelog", "--entries", str(entries), "--workdir", str(root)),
        log=root / "sourcelog.log",
    )
    _, figures = done.last("sourcelog")
    return {
        **{k: v for k, v in figures.items() if k not in ("event", "at")},
        "cpu_seconds": done.cpu_seconds,
        "goals": [],
    }
