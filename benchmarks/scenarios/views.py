"""views: the cost of each view besides encounter, over the Synthea bulk export in one stream.

The export (one NDJSON per resource type, benchmarks/shared_data.py) is cut into `views_batches` parts per file,
landed so that each batch takes one part of every file. The job runs it twice over the same files: with encounter
alone, and with encounter and every other shipped view; a full run alternates the two `views_repeat` times.

Each view's cost is its step's seconds (`view_<name>`) over the Encounter-only batch time of the same batch (the
median over the runs), per batch; the added time is the whole batch's difference between the two runs, per view.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from benchmarks import procs
from benchmarks.scenarios.common import Bench, Figures, count_rows, goal
from benchmarks.shared_data import BULK, missing
from streaming.config import ENCOUNTER_VIEW, VIEW_TABLE_PREFIX
from streaming.viewdef.shipped import SHIPPED_VIEWS

# Each view's step, and the batch time the views add, per view, at most this share of the Encounter-only batch.
VIEW_COST_TARGET = 0.15


def others() -> tuple[str, ...]:
    """The shipped views besides encounter, in their order."""
    return tuple(v for v in SHIPPED_VIEWS if v != ENCOUNTER_VIEW)


def land_parts(source: Path, landing: Path, parts: int) -> list[Path]:
    """Each NDJSON file of `source` cut into `parts` files (every `parts`-th line), part k landed a minute after
    part k-1, so the stream takes part k of every file in batch k."""
    landing.mkdir(parents=True, exist_ok=True)
    landed: list[Path] = []
    sources = sorted(source.glob("*.ndjson"))
    if not sources:
        raise FileNotFoundError(missing(source))
    first = 1_700_000_000
    for path in sources:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for k in range(parts):
            part = landing / f"{path.stem}.part{k}.ndjson"
            part.write_text("".join(f"{line}\n" for line in lines[k::parts]), encoding="utf-8")
            os.utime(part, (first + 60 * k, first + 60 * k))
            landed.append(part)
    return landed


def _run(bench: Bench, root: Path, name: str, views: Sequence[str], landing: Path, per_batch: int) -> Figures:
    """One `run --once` over the landed parts: each batch's seconds and view steps, and the rows each table got."""
    work = root / name
    config = bench.settings(root / f"{name}.toml")
    done = bench.run(
        procs.job(
            "run", "--once", "--config", str(config), "--source", str(landing), "--warehouse", str(work / "warehouse"),
            "--checkpoint", str(work / "checkpoint"), "--ledger-path", str(work / "ledger.sqlite3"),
            "--views", ",".join(views), "--max-files-per-trigger", str(per_batch),
        ),
        log=work.with_suffix(".log"),
    )  # fmt: skip
    batches = [e for _, e in done.events("batch") if e.get("files")]
    tables = {v: f"{VIEW_TABLE_PREFIX}{v}" for v in views if v != ENCOUNTER_VIEW}
    rows = {
        view: count_rows(work / "warehouse", f"SELECT count(*) AS n FROM {table}")[0]["n"]
        for view, table in tables.items()
        if (work / "warehouse" / table).exists()
    }
    return {
        "batch_seconds": [b["seconds"] for b in batches],
        # The view's step in each batch (0 in a batch without its resource type: nothing is written).
        "view_seconds": {v: [(b.get("views") or {}).get(v, {}).get("seconds") or 0.0 for b in batches] for v in tables},
        "view_rows": rows,
        "encounters": count_rows(work / "warehouse", "SELECT count(*) AS n FROM bronze_encounter")[0]["n"],
    }


def _median_each(runs: Sequence[Sequence[float]]) -> list[float]:
    """The median of each position over the runs (batch k of every run)."""
    return [round(statistics.median(values), 3) for values in zip(*runs, strict=True)]


def costs(encounter_only: Sequence[float], views: Mapping[str, Sequence[float]]) -> dict[str, Figures]:
    """Each view's step over the Encounter-only batch time, per batch, and its median over the batches it wrote."""
    out = {}
    for view, seconds in views.items():
        shares = [round(s / e, 3) for s, e in zip(seconds, encounter_only, strict=True)]
        wrote = [share for share, s in zip(shares, seconds, strict=True) if s > 0]
        out[view] = {"shares": shares, "median_share": round(statistics.median(wrote), 3) if wrote else None}
    return out


def views(bench: Bench) -> Figures:
    """Encounter alone, then with every other shipped view, over the same parts of the bulk export."""
    root = bench.fresh("views")
    parts = bench.sizes.views_batches
    landed = land_parts(BULK, root / "landing", parts)
    per_batch = len(landed) // parts
    added = others()
    runs: dict[str, list[Figures]] = {"encounter": [], "all": []}
    for n in range(bench.sizes.views_repeat):  # alternated: a slow stretch of the machine hits both
        runs["encounter"].append(_run(bench, root, f"encounter-{n}", [ENCOUNTER_VIEW], root / "landing", per_batch))
        runs["all"].append(_run(bench, root, f"all-{n}", [ENCOUNTER_VIEW, *added], root / "landing", per_batch))
    alone = _median_each([r["batch_seconds"] for r in runs["encounter"]])
    together = _median_each([r["batch_seconds"] for r in runs["all"]])
    steps = {v: _median_each([r["view_seconds"][v] for r in runs["all"]]) for v in added}
    per_view = costs(alone, steps)
    writing = [v for v in added if any(steps[v])]  # a view whose resource type the export has
    added_share = round((sum(together) - sum(alone)) / sum(alone) / max(1, len(writing)), 3)
    largest = max((c["median_share"] for c in per_view.values() if c["median_share"] is not None), default=None)
    return {
        "input": {"source": BULK.name, "files": len(landed), "batches": parts, "repeat": bench.sizes.views_repeat},
        "views": list(added),
        "views_writing": writing,
        "encounter_only_batch_seconds": alone,
        "all_views_batch_seconds": together,
        "view_step_seconds": steps,
        "view_cost": per_view,
        "added_share_per_view": added_share,
        "view_rows": runs["all"][0]["view_rows"],
        "encounters": [r["encounters"] for rs in runs.values() for r in rs],
        "goals": [
            goal(
                "largest view's step / Encounter-only batch (median over batches)",
                largest,
                VIEW_COST_TARGET,
                at_most=True,
            ),
            goal(
                "batch time the views add / Encounter-only batch, per view", added_share, VIEW_COST_TARGET, at_most=True
            ),
        ],
    }
