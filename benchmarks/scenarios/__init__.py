"""The benchmark scenarios: each generates its data (streaming/generate.py), runs whole processes, returns figures.

Scenarios answer issue 9's questions; each returns plain data (the `results.json` entry) with its goals:

- backfill: ours (`bronze-encounter run --once`) vs plain Spark Parquet, Delta Lake and Iceberg on the same files,
  each peer with a simple mapping and with the job's own read and mapping (like for like);
- latency:  steady arrival at trigger 2 s and 10 s: land -> visible per file, each batch's steps;
- upsert:   batches of updates (some moving hospital) into a small and a large table;
- listing:  triggers and a restart over a prefix of many already-ingested files vs few, with the deploy's settings
            (source_archive), and the many again without it;
- soak:     steady arrival for a long time: driver memory, files per partition, file size, batch time;
- split:    the Python reader alone vs a bare `json.loads` per line (no JVM);
- read:     the read step's profile on the backfill's files: cold, warm, and each projection of flatten.
- query_scale: `query` on a large table, a point lookup and a one-hospital count, before and after issue 27
  (benchmarks/query_scale.py).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks import eventlog, peers, procs
from benchmarks.scenarios.common import (
    Bench,
    Figures,
    Sizes,
    _files_for,
    _land,
    _stage_arrivals,
    _steady_run,
    _wait,
    count_rows,
    event_conf,
    goal,
    layout,
    parquet_codec,
    percentile,
)
from streaming import config as conf
from streaming.generate import HOSPITALS, GeneratedSet, generate

__all__ = ["SCENARIOS", "Bench", "Sizes"]


def _steps_summary(steps: Mapping[int, Mapping[str, float]]) -> dict[str, float]:
    totals: Counter[str] = Counter()
    for batch in steps.values():
        totals.update(batch)
    return {k: round(v, 2) for k, v in totals.items()}


# -- backfill --------------------------------------------------------------------------------------------------


# The two ways the peers read and map (peers.MAPPINGS), as the results name them.
MAPPING_NAMES = {
    "simple": "simple mapping (Spark's reader, one from_json)",
    "job": "the job's read and mapping (like for like)",
}
# The backfill goals: our throughput at least this share of each peer's.
BACKFILL_TARGETS = {"plain": ("plain Spark", 0.6), "delta": ("Delta Lake", 1.0), "iceberg": ("Iceberg", 1.0)}


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


def latency(bench: Bench) -> Figures:
    """Steady arrival at each trigger interval: land -> visible p50/p95/max and each batch's steps."""
    triggers = bench.sizes.latency_triggers
    measured = bench.each(
        lambda t: _steady_run(bench, f"latency-{t}s", trigger=t, seconds=bench.sizes.latency_seconds), triggers
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
                10,
                at_most=True,
                valid=fast["valid"],
            ),
        ],
    }


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


# -- upsert scaling --------------------------------------------------------------------------------------------


def _updates(
    base: list[Path], *, batches: int, size: int, moving: float, seed: int
) -> tuple[list[list[str]], Counter[str]]:
    """Update batches of existing encounters (newer lastUpdated, some at another hospital) and the hospital moves."""
    lines = [(p, i) for p in base if p.suffix == ".ndjson" for i in range(_line_count(p))]
    rng = random.Random(seed)
    picked = rng.sample(lines, min(len(lines), batches * size))
    wanted: dict[Path, set[int]] = {}
    for path, index in picked:
        wanted.setdefault(path, set()).add(index)
    chosen: dict[tuple[Path, int], dict[str, Any]] = {}
    for path, indexes in wanted.items():
        for index, line in enumerate(path.read_text().splitlines()):
            if index in indexes:
                chosen[(path, index)] = json.loads(line)
    moves: Counter[str] = Counter()
    out: list[list[str]] = []
    for b in range(batches):
        batch = []
        for j, key in enumerate(picked[b * size : (b + 1) * size]):
            resource = chosen[key]
            updated = datetime.fromisoformat(resource["meta"]["lastUpdated"].replace("Z", "+00:00"))
            resource["meta"]["lastUpdated"] = (updated + timedelta(days=1 + b)).astimezone(UTC).isoformat()
            resource["status"] = "finished"
            if j < size * moving:
                old = resource["serviceProvider"]["display"]
                new = HOSPITALS[(HOSPITALS.index(old) + 1 + b) % len(HOSPITALS)]
                resource["serviceProvider"]["display"] = new
                moves[old] -= 1
                moves[new] += 1
            batch.append(json.dumps(resource, separators=(",", ":")))
        out.append(batch)
    return out, moves


def _line_count(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


@dataclass(frozen=True)
class _UpsertTable:
    """One table of the upsert benchmark: its folder, the files it is seeded with, its update batches."""

    rows: int
    root: Path
    generated: GeneratedSet
    updates: list[list[str]]  # NDJSON lines per batch; the first batch warms the JVM up (not counted)
    moves: Counter[str]  # rows each hospital gains (+) or loses (-) through the updates

    @property
    def base(self) -> Path:
        return self.root / "base"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"


def _upsert_table(bench: Bench, rows: int) -> _UpsertTable:
    """Generate a table's seed files and its update batches (some rows moving hospital)."""
    sizes = bench.sizes
    root = bench.fresh(f"upsert-{rows}")
    per_file = min(10_000, max(1, rows // 8))
    generated = generate(root / "base", files=_files_for(rows, per_file), per_file=per_file, seed=31)
    updates, moves = _updates(
        list(generated.files),
        batches=sizes.upsert_batches + 1,  # the first warms the JVM up (JIT, code generation): not counted
        size=sizes.upsert_batch,
        moving=sizes.upsert_moving,
        seed=32,
    )
    return _UpsertTable(rows, root, generated, updates, moves)


def _seed(bench: Bench, tables: list[_UpsertTable]) -> procs.Finished:
    """Bulk-insert the tables' seed files in one process (`benchmarks.peers seed`), then drop the files."""
    log_dir = tables[0].root
    seeded = bench.run(
        procs.python(
            "-m", "benchmarks.peers", "seed", "--config", str(bench.settings(log_dir / "seed.toml")),
            *[arg for t in tables for arg in ("--source", str(t.base), "--warehouse", str(t.warehouse))],
        ),
        log=log_dir / "seed.log",
    )  # fmt: skip
    for table in tables:
        shutil.rmtree(table.base)  # the table holds them now; at 5M rows the files are ~7 GB
    return seeded


def _measure_upserts(bench: Bench, table: _UpsertTable, seeded: procs.Finished) -> Figures:
    """The job takes a seeded table's update batches one per trigger; the bronze step and Hudi's phases of each."""
    root, warehouse, landing = table.root, table.warehouse, table.root / "landing"
    landing.mkdir()
    for b, lines in enumerate(table.updates):
        path = landing / f"updates-{b:03d}.ndjson"
        path.write_text("\n".join(lines) + "\n")
        os.utime(path, (time.time() + b, time.time() + b))  # the file source takes them oldest first
    events = root / "events"
    config = bench.settings(root / "bench.toml", spark_conf=event_conf(events))
    done = bench.run(
        procs.job(
            "run", "--once", "--config", str(config), "--source", str(landing), "--warehouse", str(warehouse),
            "--max-files-per-trigger", "1",
        ),
        log=root / "job.log",
    )  # fmt: skip
    steps = done.batch_steps()
    phases = eventlog.hudi_phases(eventlog.read(events), table="bronze_encounter")
    per_hospital = count_rows(
        warehouse,
        "SELECT hospital_name AS h, count(*) AS n, count(DISTINCT encounter_id) AS k FROM bronze_encounter GROUP BY 1",
    )
    expected = Counter(dict(table.generated.per_hospital))
    expected.update(table.moves)
    warmup, *measured = [
        {
            "batch_id": line["batch_id"],
            "rows": line["rows_written"],
            "seconds": line["seconds"],
            "steps": steps.get(line["batch_id"], {}),
        }
        for _, line in done.events("batch")
    ]
    return {
        "table_rows": len(table.generated.encounter_ids),
        "setup_seconds": round(seeded.wall_seconds, 1),  # the seed process (a quick run's seeds every table)
        "warmup_batch": warmup,
        "batches": measured,
        "bronze_seconds_p50": statistics.median(b["steps"]["bronze"] for b in measured),
        "hudi_phases": {b: p for b, p in phases.items() if b != str(warmup["batch_id"])},
        "rows_after": sum(r["n"] for r in per_hospital),
        "keys_after": sum(r["k"] for r in per_hospital),
        "per_hospital_matches": {r["h"]: r["n"] for r in per_hospital} == {h: n for h, n in expected.items() if n},
        "layout": layout(warehouse / "bronze_encounter"),
        "cpu_seconds": done.cpu_seconds,
    }


def upsert(bench: Bench) -> Figures:
    """Batches of updates into a small and a large table: the bronze step per batch and where its time goes."""
    sizes = bench.sizes
    tables: dict[str, Figures] = {}
    # A full run seeds each table in a process of its own just before its updates (a 5M-row table's seed files are
    # ~7 GB, dropped once seeded); a quick run seeds both in one process.
    for group in [sizes.upsert_tables] if bench.quick else [(rows,) for rows in sizes.upsert_tables]:
        prepared = [_upsert_table(bench, rows) for rows in group]
        seeded = _seed(bench, prepared)
        measured = bench.each(lambda table, seeded=seeded: _measure_upserts(bench, table, seeded), prepared)
        tables.update({str(table.rows): m for table, m in zip(prepared, measured, strict=True)})
    small, large = (tables[str(r)] for r in sizes.upsert_tables)
    ratio = round(large["bronze_seconds_p50"] / small["bronze_seconds_p50"], 3)
    return {
        "batch_rows": sizes.upsert_batch,
        "moving_share": sizes.upsert_moving,
        "tables": tables,
        "large_vs_small": ratio,
        "goals": [
            goal(f"bronze step into {large['table_rows']:,} rows vs {small['table_rows']:,}", ratio, 1.3, at_most=True)
        ],
    }


# -- listing scaling -------------------------------------------------------------------------------------------


def deploy_files_per_trigger() -> int:
    """Files per trigger as the deploy runs the job (checkpoints_conf/glue.toml, the Glue job's settings file)."""
    return conf.load(conf.env_file("glue")).max_files_per_trigger


def _listing_prefix(bench: Bench, files: int, *, archive: bool) -> Figures:
    """One prefix of `files` already-ingested files: the restart and each later trigger's time outside the batch.

    The job runs with the deploy's settings: its files per trigger, and with `archive` its `source_archive`, a
    folder beside the landing folder as the deploy's ArchivePrefix is beside LandingPrefix, so the ingested files
    have left the prefix before the restart. Without `archive` they all stay (the deploy's archive turned off).
    """
    sizes = bench.sizes
    per_trigger = deploy_files_per_trigger()
    deploy = ("--max-files-per-trigger", str(per_trigger))
    root = bench.fresh(f"listing-{files}{'-archive' if archive else ''}")
    landing, staging, warehouse = root / "landing", root / "staging", root / "warehouse"
    generated = generate(landing, files=files, per_file=1, seed=41)
    arrivals = _stage_arrivals(staging, files=sizes.listing_triggers + 2, per_file=1, seed=42)
    where = ("--source", str(landing), "--warehouse", str(warehouse))
    if archive:
        where += ("--set", f"source_archive={root / 'archive'}")
    ingest = None
    if not bench.quick or archive:
        ingest = bench.run(
            procs.job("run", "--once", "--config", str(bench.settings(root / "ingest.toml")), *where, *deploy),
            log=root / "ingest.log",
        )
    if archive:
        # Spark archives a batch's files when it commits it, at the next batch with data: one more run with one
        # file, then wait for the background moves to empty the prefix of all but that file.
        _land(arrivals.pop(), landing)
        bench.run(
            procs.job("run", "--once", "--config", str(bench.settings(root / "ingest.toml")), *where, *deploy),
            log=root / "archive.log",
        )
        deadline = time.monotonic() + 600
        while sum(1 for _ in landing.iterdir()) > 1 and time.monotonic() < deadline:
            time.sleep(0.5)
    else:
        arrivals.pop()
    events = root / "events"
    config = bench.settings(root / "bench.toml", trigger=2, spark_conf=event_conf(events))
    # A quick run without the archive has not ingested the prefix: the stream's first batch takes all of it.
    stream_max = deploy if ingest else ("--max-files-per-trigger", str(max(per_trigger, files + 1)))
    _land(arrivals[0], landing)
    job = bench.start(procs.job("run", "--config", str(config), *where, *stream_max), log=root / "stream.log")
    try:
        for i in range(len(arrivals)):  # the next file once the previous one's batch is done
            _wait(lambda n=i + 1, j=job: len(j.lines_seen("batch")) >= n, job, timeout=900)
            if i + 1 < len(arrivals):
                _land(arrivals[i + 1], landing)
    finally:
        job.stop()
    done = job.wait(300)
    progress = [p for p in eventlog.progress(eventlog.read(events)) if p["rows"]]
    later = progress[1:]  # the first trigger after a start also restores the source log
    overheads = [p["stream_overhead_seconds"] for p in later]
    counted = count_rows(warehouse, "SELECT count(*) AS n FROM bronze_encounter")
    batches = done.events("batch")
    first_batch_at, first_batch = batches[0]
    restart = first_batch_at - done.started
    return {
        "files": len(generated.files),
        "archive": archive,
        "max_files_per_trigger": per_trigger,
        "files_left_in_prefix": sum(1 for _ in landing.iterdir()),
        "rows": counted[0]["n"],
        "ingested_by": "run --once" if ingest else "the stream's first batch",
        "ingest_seconds": round(ingest.wall_seconds, 1) if ingest else first_batch["seconds"],
        "ingest_batches": len(ingest.events("batch")) if ingest else 1,
        "restart_seconds": round(restart, 2),
        # The restart without its batch: the batch writes into a table of `files` rows, a cost of the table's size.
        "restart_before_batch_seconds": round(restart - first_batch["seconds"], 2),
        "first_batch_seconds": first_batch["seconds"],
        "first_trigger_overhead_seconds": round(progress[0]["stream_overhead_seconds"], 3),
        "triggers": len(later),
        "listing_seconds_p50": statistics.median(p["latest_offset_seconds"] for p in later),
        "overhead_seconds_p50": statistics.median(overheads),
        # Every 10th trigger compacts the source log (all files ever logged): the mean carries it, the p50 not.
        "overhead_seconds_mean": round(statistics.fmean(overheads), 3),
        "overhead_seconds_max": max(overheads),
        "overheads": overheads,
        "batch_seconds_p50": statistics.median(p["batch_seconds"] for p in later),
        "new_files": sum(b["files"] for _, b in batches) - (0 if ingest else len(generated.files)),
    }


def listing(bench: Bench) -> Figures:
    """A prefix of many already-ingested files vs few, with the deploy's settings: each trigger's time outside the
    batch, and a restart; the largest prefix again without `source_archive` (the deploy's default turned off).

    The prefix is ingested first (`run --once`). Then a continuous job (trigger 2 s) starts with one new file
    waiting (restart = process start to that file's batch done) and gets one new file per trigger after that:
    each trigger lists the whole prefix (Spark 3.5 reports idle triggers without durations, so each gets a file).
    A quick run skips the `run --once` process of the prefix without the archive: the continuous job's first batch
    ingests it with the first new file, so its restart includes that ingest.
    """
    sizes = bench.sizes
    few, many = min(sizes.listing_files), max(sizes.listing_files)
    cases = [(files, True) for files in sizes.listing_files] + [(many, False)]
    measured = bench.each(lambda case: _listing_prefix(bench, case[0], archive=case[1]), cases)
    names = [f"{files}{'+archive' if archive else ''}" for files, archive in cases]
    prefixes = dict(zip(names, measured, strict=True))
    base, archived, kept = prefixes[f"{few}+archive"], prefixes[f"{many}+archive"], prefixes[str(many)]

    def added(prefix: Figures, figure: str) -> float:
        return round(prefix[figure] - base[figure], 3)

    per_trigger, restart = added(archived, "overhead_seconds_p50"), added(archived, "restart_seconds")
    settings = f"source_archive, {base['max_files_per_trigger']:,} files per trigger"
    return {
        "prefixes": prefixes,
        "baseline": f"{few}+archive",
        "max_files_per_trigger": base["max_files_per_trigger"],
        "added_seconds_per_trigger": per_trigger,
        "added_seconds_per_trigger_mean": added(archived, "overhead_seconds_mean"),
        "added_restart_seconds": restart,
        "added_restart_before_batch_seconds": added(archived, "restart_before_batch_seconds"),
        # The same prefix without source_archive: every ingested file listed again at each trigger and restart.
        "added_seconds_per_trigger_no_archive": added(kept, "overhead_seconds_p50"),
        "added_restart_seconds_no_archive": added(kept, "restart_seconds"),
        "goals": [
            goal(f"added seconds per trigger, {many:,} vs {few:,} files ({settings})", per_trigger, 0.5, at_most=True),
            goal(f"added seconds per restart, {many:,} vs {few:,} files ({settings})", restart, 2, at_most=True),
        ],
    }


# -- split (no JVM) --------------------------------------------------------------------------------------------


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


def query_scale(bench: Bench) -> Figures:
    """`query` on a large table: pushed-down filters and streamed results against a whole read (query_scale.py)."""
    from benchmarks import query_scale

    return query_scale.query_scale(bench)


SCENARIOS: dict[str, Callable[[Bench], Figures]] = {
    "split": split,
    "read": read,
    "backfill": backfill,
    "latency": latency,
    "upsert": upsert,
    "listing": listing,
    "soak": soak,
    "sourcelog": sourcelog,
    "query_scale": query_scale,
}
