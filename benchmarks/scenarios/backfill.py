"""backfill: ours (`bronze-encounter run --once`) vs plain Spark Parquet, Delta Lake and Iceberg on the same
files, each peer with a simple mapping and with the job's own read and mapping (like for like).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from benchmarks import peers, procs
from benchmarks.scenarios.common import Bench, Figures, count_rows, footprint, goal, parquet_codec
from streaming.generate import generate


def _steps_summary(steps: Mapping[int, Mapping[str, float]]) -> dict[str, float]:
    totals: Counter[str] = Counter()
    for batch in steps.values():
        totals.update(batch)
    return {k: round(v, 2) for k, v in totals.items()}


# The two ways the peers read and map (peers.MAPPINGS), as the results name them.
MAPPING_NAMES = {
    "simple": "simple mapping (Spark's reader, one from_json)",
    "job": "the job's read and mapping (like for like)",
}
# The backfill goals: our throughput at least this share of each peer's.
BACKFILL_TARGETS = {"plain": ("plain Spark", 0.6), "delta": ("Delta Lake", 1.0), "iceberg": ("Iceberg", 1.0)}
# Footers (Hudi's bloom filter) at most this share of bronze's bytes; an ingest-log file of one row at most
# this many bytes.
FOOTER_SHARE_TARGET = 0.05
INGEST_LOG_FILE_TARGET = 50_000


def _peer_figures(done: procs.Finished, process: str, kind: str, mapping: str, began: float, root: Path) -> Figures:
    """One peer's figures from its process: from `began` to its last write, CPU the same stretch, then its counts."""
    writes = [e for _, e in done.events("written") if (e.get("kind"), e.get("mapping")) == (kind, mapping)]
    ended, _ = done.last("written", kind=kind, mapping=mapping)
    _, counted = done.last("rows", kind=kind, mapping=mapping)
    return {
        "seconds": round(ended - began, 2),
        # The CPU its process tree spent to the last write: neither the stream's shutdown nor the counts after it.
        "cpu_seconds": round(done.cpu_at(ended) - done.cpu_at(began), 2),
        "process": process,
        "process_seconds": round(done.wall_seconds, 2),
        "process_cpu_seconds": done.cpu_seconds,
        "batches": len(writes),
        "rows": counted["rows"],
        "keys": counted["keys"],
        "rejected": counted["rejected"],
        "codec": parquet_codec(root / mapping / kind),
    }


def backfill(bench: Bench) -> Figures:
    """One backfill of the same generated files by each contender into a fresh table (processes: see below).

    Each peer runs twice: with the simple mapping (the floor a plain Spark job sets) and with the job's own read and
    mapping (peers.py), so a ratio of the second kind compares table formats and bookkeeping, not mappings.
    """
    root = bench.fresh("backfill")
    landing = root / "landing"
    generated = generate(landing, files=bench.sizes.backfill_files, per_file=bench.sizes.backfill_per_file, seed=9)
    expected = len(generated.encounter_ids)
    config = bench.settings(root / "bench.toml")
    found: dict[str, dict[str, Figures]] = {mapping: {} for mapping in peers.MAPPINGS}
    # A full run gives each peer and mapping a process of its own, its JVM start counted as ours is; a quick run
    # starts one process for all of them (their times are not compared there): each then counts from its `start`.
    groups: list[tuple[tuple[str, ...], tuple[str, ...]]]
    if bench.quick:
        groups = [(peers.CONTENDERS, peers.MAPPINGS)]
    else:
        groups = [((kind,), (mapping,)) for mapping in peers.MAPPINGS for kind in peers.CONTENDERS]
    for kinds, mappings in groups:
        process = f"{'+'.join(kinds)}, {'+'.join(mappings)}"
        done = bench.run(
            procs.python(
                "-m", "benchmarks.peers", *kinds, *(a for m in mappings for a in ("--mapping", m)),
                "--source", str(landing), "--out", str(root), "--config", str(config),
            ),
            log=root / f"{process.replace(', ', '-')}.log",
        )  # fmt: skip
        first = True
        for mapping in mappings:
            for kind in kinds:
                began = done.started if first else done.last("start", kind=kind, mapping=mapping)[0]
                found[mapping][kind] = _peer_figures(done, process, kind, mapping, began, root)
                first = False
    warehouse = root / "ours"
    done = bench.run(
        procs.job("run", "--once", "--config", str(config), "--source", str(landing), "--warehouse", str(warehouse)),
        log=root / "ours.log",
    )
    batches = done.events("batch")
    counted = count_rows(warehouse, "SELECT count(*) AS n, count(DISTINCT encounter_id) AS k FROM bronze_encounter")
    steps = done.batch_steps()
    ended = batches[-1][0]
    ours = {
        "seconds": round(ended - done.started, 2),
        # Up to its last batch, as the peers' up to their last write: not the job's own shutdown.
        "cpu_seconds": round(done.cpu_at(ended), 2),
        "process_seconds": round(done.wall_seconds, 2),
        "process_cpu_seconds": done.cpu_seconds,
        "rows": counted[0]["n"],
        "keys": counted[0]["k"],
        "rejected": sum(b["rows_rejected"] for _, b in batches),
        "codec": parquet_codec(warehouse / "bronze_encounter"),
        "batches": len(batches),
        "steps": _steps_summary(steps),
        # Everything that is not a batch: interpreter and JVM start, lease, catalog, recovery, stream start.
        "outside_batches_seconds": round(ended - done.started - sum(b["seconds"] for _, b in batches), 2),
        # What the tables hold per row and what a reader reads before the first row (footers).
        "footprint": footprint(warehouse / "bronze_encounter"),
        "ingest_log_footprint": footprint(warehouse / "bronze_encounter_ingest_log"),
    }
    # theirs / ours: > 1 means we are faster (seconds) or cheaper (CPU)
    ratios = {
        mapping: {f"vs_{k}": round(c["seconds"] / ours["seconds"], 3) for k, c in found[mapping].items()}
        for mapping in peers.MAPPINGS
    }
    cpu_ratios = {
        mapping: {f"vs_{k}": round(c["cpu_seconds"] / ours["cpu_seconds"], 3) for k, c in found[mapping].items()}
        for mapping in peers.MAPPINGS
    }
    goals = [
        goal(f"backfill throughput vs {name}, {MAPPING_NAMES[mapping]}", ratios[mapping][f"vs_{k}"], at, at_most=False)
        for mapping in peers.MAPPINGS
        for k, (name, at) in BACKFILL_TARGETS.items()
    ]
    bronze, log = ours["footprint"], ours["ingest_log_footprint"]
    goals += [
        goal("bronze footer bytes / file bytes", bronze["footer_share"], FOOTER_SHARE_TARGET, at_most=True),
        goal(
            f"ingest-log file bytes ({log['rows']} row(s) in {log['files']} file(s))",
            log["max_file_bytes"],
            INGEST_LOG_FILE_TARGET,
            at_most=True,
            valid=log["rows"] == log["files"],  # one row a file: the case the goal is about
        ),
    ]
    return {
        "input": {
            "files": len(generated.files),
            "encounters": expected,
            "bytes": sum(p.stat().st_size for p in generated.files),
        },
        "mappings": MAPPING_NAMES,
        "ours": ours,
        "peers": found,  # by mapping, then contender
        "throughput_ratio": ratios,  # by mapping: theirs seconds / ours seconds
        "cpu_ratio": cpu_ratios,
        "goals": goals,
    }
