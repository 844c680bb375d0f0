"""read: the read step's profile on the backfill's files: cold, warm, and each projection of flatten."""

from __future__ import annotations

from benchmarks import procs
from benchmarks.scenarios.common import Bench, Figures
from streaming.generate import generate


def read(bench: Bench) -> Figures:
    """Where the read step's time goes: the backfill's files, one process (benchmarks/readprofile.py)."""
    root = bench.fresh("read")
    landing = root / "landing"
    generate(landing, files=bench.sizes.backfill_files, per_file=bench.sizes.backfill_per_file, seed=9)
    config = bench.settings(root / "bench.toml")
    done = bench.run(
        procs.python("-m", "benchmarks.readprofile", "--source", str(landing), "--config", str(config)),
        log=root / "readprofile.log",
    )
    _, figures = done.last("profile")
    return {
        **{k: v for k, v in figures.items() if k not in ("event", "at")},
        "cpu_seconds": done.cpu_seconds,
        "goals": [],
    }
