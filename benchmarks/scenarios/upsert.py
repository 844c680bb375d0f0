"""upsert: batches of updates (some moving hospital) into a small and a large table."""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks import eventlog, procs
from benchmarks.scenarios.common import (
    Bench,
    Figures,
    _files_for,
    count_rows,
    event_conf,
    footprint,
    goal,
    layout,
)
from streaming.generate import HOSPITALS, GeneratedSet, generate


@dataclass(frozen=True)
class Variant:
    """One kind of update batch: the share of its rows that move hospital, drawn from where in the table."""

    moving: float
    recent: bool  # from the newest-landed tenth of the table (encounters updated while open), else anywhere

    @property
    def name(self) -> str:
        return f"{'recent' if self.recent else 'uniform'}, {self.moving:.0%} move"


# Updates as users meet them, each measured in the same job run (batches interleaved, so drift over the run
# spreads over every variant): without a move, with 1% and 10% moving hospital, uniformly random or recent.
VARIANTS = tuple(Variant(moving, recent) for recent in (False, True) for moving in (0.0, 0.01, 0.10))
WARMUP = Variant(0.10, recent=False)
RECENT_SHARE = 0.1  # "recent": the last-landed tenth of the seed files' encounters


def _updates(base: list[Path], plan: list[Variant], *, size: int, seed: int) -> tuple[list[list[str]], Counter[str]]:
    """One update batch per planned variant (existing encounters, a newer lastUpdated, some at another hospital),
    and the rows each hospital gains or loses through the moves."""
    lines = [(p, i) for p in sorted(base) if p.suffix == ".ndjson" for i in range(_line_count(p))]
    recent = lines[-max(size, round(len(lines) * RECENT_SHARE)) :]  # generated files are named in landing order
    rng = random.Random(seed)
    picks = [rng.sample(recent if v.recent else lines, min(size, len(lines))) for v in plan]
    wanted: dict[Path, set[int]] = {}
    for path, index in (key for pick in picks for key in pick):
        wanted.setdefault(path, set()).add(index)
    chosen: dict[tuple[Path, int], dict[str, Any]] = {}
    for path, indexes in wanted.items():
        for index, line in enumerate(path.read_text().splitlines()):
            if index in indexes:
                chosen[(path, index)] = json.loads(line)
    moves: Counter[str] = Counter()
    out: list[list[str]] = []
    for b, (variant, pick) in enumerate(zip(plan, picks, strict=True)):
        batch = []
        for j, key in enumerate(pick):
            resource = chosen[key]  # a key picked again later moves on from this batch's state
            updated = datetime.fromisoformat(resource["meta"]["lastUpdated"].replace("Z", "+00:00"))
            resource["meta"]["lastUpdated"] = (updated + timedelta(days=1 + b)).astimezone(UTC).isoformat()
            resource["status"] = "finished"
            if j < round(len(pick) * variant.moving):
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
    plan: list[Variant]  # each batch's variant, the warm-up first
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
    # The first batch warms the JVM up (JIT, code generation): not counted.
    plan = [WARMUP, *(v for _ in range(sizes.upsert_batches) for v in VARIANTS)]
    updates, moves = _updates(list(generated.files), plan, size=sizes.upsert_batch, seed=32)
    return _UpsertTable(rows, root, generated, updates, plan, moves)


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
            "variant": variant.name,
            "batch_id": line["batch_id"],
            "rows": line["rows_written"],
            "seconds": line["seconds"],
            "steps": steps.get(line["batch_id"], {}),
        }
        for variant, (_, line) in zip(table.plan, done.events("batch"), strict=True)
    ]
    by_variant = {
        v.name: statistics.median(b["steps"]["bronze"] for b in measured if b["variant"] == v.name) for v in VARIANTS
    }
    return {
        "table_rows": len(table.generated.encounter_ids),
        "setup_seconds": round(seeded.wall_seconds, 1),  # the seed process (a quick run's seeds every table)
        "warmup_batch": warmup,
        "batches": measured,
        "bronze_seconds_p50": statistics.median(b["steps"]["bronze"] for b in measured),
        "bronze_seconds_p50_by_variant": by_variant,
        "hudi_phases": {b: p for b, p in phases.items() if b != str(warmup["batch_id"])},
        "rows_after": sum(r["n"] for r in per_hospital),
        "keys_after": sum(r["k"] for r in per_hospital),
        "per_hospital_matches": {r["h"]: r["n"] for r in per_hospital} == {h: n for h, n in expected.items() if n},
        "layout": layout(warehouse / "bronze_encounter"),
        "footprint": footprint(warehouse / "bronze_encounter"),  # bytes per row, footer bytes after the updates
        "cpu_seconds": done.cpu_seconds,
    }


# The goals: these variants' bronze step into the 10x table at most 1.3x the small table's; the others (the
# moves) are measured and explained in docs/performance.md.
GOAL_VARIANTS = (Variant(0.0, recent=False), Variant(0.0, recent=True))


def upsert(bench: Bench) -> Figures:
    """Batches of updates into a small and a large table: the bronze step per batch and where its time goes."""
    sizes = bench.sizes
    tables: dict[str, Figures] = {}
    # A full run seeds each table in a process of its own just before its updates (a 5M-row table's seed files are
    # ~7 GB, dropped once seeded); a quick run seeds both in one process.
    for group in [sizes.upsert_tables] if bench.quick else [(rows,) for rows in sizes.upsert_tables]:
        prepared = [_upsert_table(bench, rows) for rows in group]
        seeded = _seed(bench, prepared)
        measured = bench.each(functools.partial(_measure_upserts, bench, seeded=seeded), prepared)
        tables.update({str(table.rows): m for table, m in zip(prepared, measured, strict=True)})
    small, large = (tables[str(r)] for r in sizes.upsert_tables)
    by_variant = {
        v.name: round(
            large["bronze_seconds_p50_by_variant"][v.name] / small["bronze_seconds_p50_by_variant"][v.name], 3
        )
        for v in VARIANTS
    }
    return {
        "batch_rows": sizes.upsert_batch,
        "variants": [v.name for v in VARIANTS],
        "tables": tables,
        "large_vs_small": round(large["bronze_seconds_p50"] / small["bronze_seconds_p50"], 3),
        "large_vs_small_by_variant": by_variant,
        "goals": [
            goal(
                f"bronze step, {v.name}, into {large['table_rows']:,} rows vs {small['table_rows']:,}",
                by_variant[v.name],
                1.3,
                at_most=True,
            )
            for v in GOAL_VARIANTS
        ],
    }
