"""The benchmark suite: one command, every figure the scenarios promise, as JSON, a Markdown table and PNG plots.

    python -m benchmarks.run [--quick] [--only backfill,latency,upsert,listing,soak,split,read] [--scale N]
                             [--latency-seconds S] [--soak-seconds S]
                             [--out benchmarks/results] [--workdir work/bench] [--keep] [--parallel N]

`make bench` runs the full sizes (300,010 encounters, tables of 500k and 5M rows, 100k files, a 30-minute soak
into a table of 1M encounters; a few hours on 2 cores). `--quick` runs tiny sizes that still produce every figure
(the test suite's smoke run: it checks the figures exist, never a time); its times mean nothing, so it also starts
fewer and cheaper JVMs: the peers (both mappings) share one process, both upsert tables one seed process, the
listing stream ingests its own prefix, a scenario's independent processes run side by side, and the JIT stops at
C1.
`--scale 0.1` shrinks the data sizes of a full run; `--latency-seconds` / `--soak-seconds` its durations.
Every process keeps its temporary files under `--workdir`.

Scenarios are in benchmarks/scenarios/ (a module each, what they share in common.py), the contenders in
benchmarks/peers.py, process measurement in benchmarks/procs.py, Spark event-log reading
(also `python -m benchmarks.eventlog DIR`, a profile of a run) in benchmarks/eventlog.py. Every contender is a whole
process (start-up counted the same way). Machines here have 2 shared cores: each result records the machine, the
load average before and after, and CPU seconds beside wall seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import peers, scenarios
from streaming import config as conf
from streaming.cli.settings import parse_set

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results"
DEFAULT_WORK = ROOT / "work" / "bench"


def machine() -> dict[str, Any]:
    """What the numbers were measured on: cores, memory, CPU model, load, versions of everything involved."""
    from importlib.metadata import version

    from streaming.lakehouse.jars import JARS

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = re.search(r"MemTotal:\s+(\d+) kB", _read("/proc/meminfo"))
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "cpu_model": cpu,
        "os": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": {
            "python": platform.python_version(),
            "java": java[0] if java else "unknown",
            "pyspark": version("pyspark"),
            "pyarrow": version("pyarrow"),
            **{jar.artifact: jar.version for jar in JARS},
            "delta": peers.DELTA_VERSION,
            "iceberg": peers.ICEBERG_VERSION,
        },
        "code": _git_state(),
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _git_state() -> str:
    """The commit measured, and whether the work tree differed from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return head.stdout.strip() + (" (work tree modified)" if dirty.stdout.strip() else "")


# -- Markdown --------------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _section(title: str, intro: str) -> list[str]:
    return [f"## {title}", "", intro, ""]


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def markdown(results: dict[str, Any]) -> str:
    """results.md: the machine, then a table per scenario with its goals and whether each is met."""
    m = results["machine"]
    out = [
        "# Benchmark results",
        "",
        f"{results['mode']} run (scale {results['scale']}), {results['started']}, {results['seconds']:.0f} s. "
        f"Machine: {m['cores']} cores, {m['memory_gb']} GB, {m['cpu_model']}; load average "
        f"{m['load_average']} before, {results['load_average_after']} after. Code {m['code']}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        "",
        "Wall seconds depend on what else runs on the machine; CPU seconds (the whole process tree) much less.",
        "",
    ]
    if results.get("job_settings"):
        changed = ", ".join(f"`{k} = {v}`" for k, v in results["job_settings"].items())
        out += [f"Job settings changed for this run (`--set`): {changed}.", ""]
    s = {name: sc for name, sc in results["scenarios"].items() if "error" not in sc}
    for name, section in _SECTIONS.items():
        if name in s:
            out += section(s[name], results)
    goals = [(name, g) for name, sc in s.items() for g in sc.get("goals", [])]
    out += ["## Goals", ""]
    out += _table(
        ["scenario", "goal", "value", "target", "valid", "met"],
        [[n, g["goal"], g["value"], g["target"], g.get("valid", True), g["met"]] for n, g in goals],
    )
    errors = [(name, sc["error"]) for name, sc in results["scenarios"].items() if "error" in sc]
    if errors:
        out += ["## Failed", ""] + [f"- {name}: {error.splitlines()[-1]}" for name, error in errors] + [""]
    return "\n".join(out)


def _md_backfill(b: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """Backfill: ours and each peer per mapping, and the ratios."""
    out: list[str] = []
    processes = (
        "the peers one process (a quick run), ours its own"
        if results["mode"] == "quick"
        else "each contender and mapping a fresh process"
    )
    out += _section(
        "Backfill",
        f"{b['input']['files']} files, {b['input']['encounters']:,} encounters, "
        f"{b['input']['bytes'] / 2**20:.0f} MB; {processes}, each into a fresh table. Seconds: process start "
        "(or, sharing a process, the peer's own start) to its last write committed (ours: its last batch); "
        "CPU s: the process tree's over the same stretch; process s and process CPU s: the whole process, "
        "the counts after the write included. Each peer runs with two mappings: "
        + "; ".join(f"**{m}**: {text}" for m, text in b["mappings"].items())
        + ". The job's read and mapping is the like-for-like comparison: the same read, mapping, validation, "
        "quarantine and ordering as ours, so it differs in the table format and in our exactly-once "
        "bookkeeping (ledger, ingest log, catalog) only.",
    )
    columns = ["seconds", "cpu_seconds", "process_seconds", "process_cpu_seconds", "batches", "rows", "keys"]
    ours = b["ours"]
    rows = [["ours", "-", *(ours[c] for c in columns), ours["rejected"], ours["codec"]]]
    rows += [
        [kind, mapping, *(c[col] for col in columns), c["rejected"], c["codec"]]
        for mapping, contenders in b["peers"].items()
        for kind, c in contenders.items()
    ]
    out += _table(
        ["contender", "mapping", "seconds", "CPU s", "process s", "process CPU s", "batches", "rows", "keys",
         "rejected", "codec"],
        rows,
    )  # fmt: skip
    out += [f"Ours: steps {ours['steps']}, outside batches {ours['outside_batches_seconds']} s.", ""]
    out += _md_footprint({"bronze_encounter": ours["footprint"], "ingest log": ours["ingest_log_footprint"]})
    mappings = list(b["throughput_ratio"])
    out += [
        "Theirs / ours, side by side (> 1: ours faster, or cheaper in CPU):",
        "",
        *_table(
            ["peer", *(f"seconds, {m}" for m in mappings), *(f"CPU, {m}" for m in mappings)],
            [
                [
                    kind.removeprefix("vs_"),
                    *(b[r][m][kind] for r in ("throughput_ratio", "cpu_ratio") for m in mappings),
                ]
                for kind in b["throughput_ratio"][mappings[0]]
            ],
        ),
    ]
    return out


def _md_footprint(tables: dict[str, dict[str, Any]]) -> list[str]:
    """Bytes per row and footer bytes of our tables' latest files (benchmarks.scenarios.common.footprint)."""
    columns = ["files", "rows", "bytes", "bytes_per_row", "footer_bytes", "footer_share", "bloom_filter_bytes",
               "max_file_bytes"]  # fmt: skip
    header = ["table", "files", "rows", "bytes", "bytes/row", "footer bytes", "footer share", "bloom bytes",
              "largest file bytes"]  # fmt: skip
    return [
        "Our files: footer = Parquet metadata with its key-value pairs (Hudi's bloom filter among them) + 8 bytes.",
        "",
        *_table(header, [[name, *(t[c] for c in columns)] for name, t in tables.items()]),
    ]


def _md_latency(lat: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """Small-batch latency per trigger interval."""
    out: list[str] = []
    out += _section(
        "Small-batch latency",
        f"{lat['arrival']['files_per_second']} files/s of {lat['arrival']['encounters_per_file']} encounters "
        "(every 4th file a single resource); land -> visible = file landed to its Hudi commit completed.",
    )
    rows = []
    for run in lat["runs"].values():
        steps = _median_steps(run["batches"])
        rows.append(
            [
                run["trigger_seconds"],
                run["files_landed"],
                run["files_visible"],
                run["valid"],
                run["latency_p50_seconds"],
                run["latency_p95_seconds"],
                run["latency_max_seconds"],
                len(run["batches"]),
                run["batch_seconds_p50"],
                ", ".join(f"{k} {v}" for k, v in steps.items()),
            ]
        )
    out += _table(
        ["trigger s", "files", "visible", "valid", "p50 s", "p95 s", "max s", "batches", "batch p50 s",
         "median steps s"],
        rows,
    )  # fmt: skip
    out += [
        "Valid: every landed file became visible; a run where some did not has percentiles over the rest only, "
        "so it meets no goal.",
        "",
    ]
    return out


def _md_upsert(u: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """Upsert scaling per table size."""
    out: list[str] = []
    out += _section(
        "Upsert scaling",
        f"Batches of {u['batch_rows']:,} updates into a seeded table, one kind per batch (a share moving hospital,"
        " drawn uniformly or from the newest-landed tenth), interleaved in one job run; bronze = the job's bronze"
        " step; Hudi phases summed over the batches (Spark job wall time).",
    )
    rows = [
        [
            t["table_rows"],
            t["bronze_seconds_p50"],
            ", ".join(f"{b['steps'].get('bronze', '-')}" for b in t["batches"]),
            json.dumps(_sum_phases(t["hudi_phases"])),
            t["rows_after"],
            t["keys_after"],
            t["per_hospital_matches"],
            t["layout"]["files"],
        ]
        for t in u["tables"].values()
    ]
    out += _table(
        [
            "table rows",
            "bronze p50 s",
            "bronze per batch s",
            "Hudi phases s",
            "rows after",
            "keys",
            "hospitals ok",
            "files",
        ],
        rows,
    )
    tables = list(u["tables"].values())
    out += _table(
        ["update batch", *(f"bronze p50 s, {t['table_rows']:,} rows" for t in tables), "large / small"],
        [
            [name, *(t["bronze_seconds_p50_by_variant"][name] for t in tables), u["large_vs_small_by_variant"][name]]
            for name in u["variants"]
        ],
    )
    out += _md_footprint({f"bronze, {t['table_rows']:,} rows": t["footprint"] for t in tables})
    return out


def _md_listing(li: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """Listing scaling per prefix size."""
    out: list[str] = []
    out += _section(
        "Listing scaling",
        "Already-ingested files under the prefix, the job run with the deploy's settings (`source_archive`,"
        f" {li['max_files_per_trigger']:,} files per trigger); the largest prefix again without `source_archive`"
        " (kept). A continuous job (trigger 2 s) restarts with one new file waiting, then gets one new file per"
        " trigger. Restart = process start to that file's batch done (before batch: without the batch itself);"
        " overhead = trigger time outside the batch (listing, offset and commit logs, every 10th the source log's"
        " compaction).",
    )
    rows = [
        [
            f"{p['files']:,} {'archived' if p['archive'] else 'kept'}",
            p["restart_seconds"],
            p["restart_before_batch_seconds"],
            p["first_trigger_overhead_seconds"],
            p["listing_seconds_p50"],
            p["overhead_seconds_p50"],
            p["overhead_seconds_mean"],
            p["overhead_seconds_max"],
            p["batch_seconds_p50"],
        ]
        for p in li["prefixes"].values()
    ]
    out += _table(
        ["files", "restart s", "before batch s", "first trigger overhead s", "listing p50 s", "overhead p50 s",
         "overhead mean s", "overhead max s", "batch p50 s"],
        rows,
    )  # fmt: skip
    out += [
        f"Against {li['baseline']}, with the deploy's settings: per trigger {li['added_seconds_per_trigger']} s"
        f" (mean {li['added_seconds_per_trigger_mean']} s), to a restart {li['added_restart_seconds']} s"
        f" ({li['added_restart_before_batch_seconds']} s before its batch). Without `source_archive`: per"
        f" trigger {li['added_seconds_per_trigger_no_archive']} s, to a restart"
        f" {li['added_restart_seconds_no_archive']} s.",
        "",
    ]
    return out


def _md_soak(so: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """Soak: memory, layout and batch times over the run."""
    out: list[str] = []
    lay = so["layout"]
    mem = so["memory"]
    out += _section(
        "Soak",
        f"{so['seconds']:.0f} s of steady arrival at trigger {so['trigger_seconds']} s into a table seeded with"
        f" {so['seeded']['rows']:,} encounters (bulk insert {so['seeded']['seed_seconds']} s); driver memory sampled"
        " (JVM live heap after a full GC, JVM and Python RSS).",
    )
    out += _table(
        ["files", "rows", "heap first/last MB", "JVM RSS first/last MB", "heap change (lowest / median)",
         "files/partition", "avg file MB", "files on disk", "batch s first/last third", "p50/p95 s"],
        [[
            so["files_landed"], so["rows"],
            f"{mem[0]['heap_after_gc_mb']} / {mem[-1]['heap_after_gc_mb']}" if mem else "-",
            f"{mem[0]['jvm_rss_mb']} / {mem[-1]['jvm_rss_mb']}" if mem else "-",
            f"{so['heap_growth']} / {so['heap_growth_median']}",
            lay["files_per_partition_avg"], lay["avg_file_mb"], lay["files_on_disk"],
            f"{_fmt(so['batch_seconds_first_third_p50'])} / {_fmt(so['batch_seconds_last_third_p50'])}",
            f"{_fmt(so['latency_p50_seconds'])} / {_fmt(so['latency_p95_seconds'])}",
        ]],
    )  # fmt: skip
    services = ", ".join(f"{name} x{n}" for name, n in so["services_run"].items()) or "none"
    out += [
        "",
        f"Batches: p50 {_fmt(so['batch_seconds_p50'])} s, slowest / median {so['slowest_batch_ratio']}; services run:"
        f" {services}; metadata-table compactions: {so['metadata_compactions']}. Slowest batches:",
        "",
    ]
    out += _table(
        ["batch", "seconds", "services after it", "steps (s)"],
        [
            [b["batch_id"], _fmt(b["seconds"]), ", ".join(b["services"]) or "-",
             ", ".join(f"{k} {v}" for k, v in b["steps"].items())]
            for b in so["slowest_batches"]
        ],
    )  # fmt: skip
    return out


def _md_split(sp: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """Split (no JVM): FileSplitter against json.loads."""
    out: list[str] = []
    out += ["## Split (no JVM)", ""]
    out += _table(
        ["records", "FileSplitter s", "json.loads s", "ratio"],
        [[sp["records"], sp["ours_seconds"], sp["baseline_seconds"], sp["ratio"]]],
    )
    return out


def _md_read(rd: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """Read step profile."""
    out: list[str] = []
    out += ["## Read step profile", ""]
    out += [
        f"{rd['files']} files, {rd['records']:,} records, one process with the job's session. The batch's read"
        " (split, flatten, cache, statistics) cold and warm; then over the split records held in memory, each"
        " figure cumulative: the records alone, `from_json` alone, flatten built up one projection at a time,"
        " flatten filling the cache.",
        "",
    ]
    steps = ", ".join(f"{st['step']} ({st['columns']} columns) {_fmt(st['seconds'])}" for st in rd["flatten_steps"])
    out += _table(
        ["read cold s", "read warm s", "split alone s", "records s", "+ from_json s", "flatten by projection s",
         "flatten + cache s"],
        [[rd["read_cold_seconds"], rd["read_warm_seconds"], rd["split_seconds"], rd["records_scan_seconds"],
          rd["from_json_seconds"], steps, rd["flatten_and_cache_seconds"]]],
    )  # fmt: skip
    return out


def _md_views(vw: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """Each view's cost against the Encounter-only batch."""
    i = vw["input"]
    out = _section(
        "Views",
        f"The bulk export ({i['source']}) in {i['batches']} batches of {i['files'] // i['batches']} files, encounter"
        f" alone and with every shipped view, alternated {i['repeat']} time(s); per batch, the median over the"
        " runs. A view's cost: its step over the Encounter-only batch of the same batch.",
    )
    out += _table(
        ["batch", "encounter alone s", "with every view s"],
        [[n, a, b] for n, (a, b) in enumerate(zip(vw["encounter_only_batch_seconds"],
                                                   vw["all_views_batch_seconds"], strict=True))],
    )  # fmt: skip
    out += _table(
        ["view", "rows", "step s per batch", "share per batch", "median share"],
        [[v, vw["view_rows"].get(v, 0), ", ".join(_fmt(x) for x in vw["view_step_seconds"][v]),
          ", ".join(_fmt(x) for x in vw["view_cost"][v]["shares"]), vw["view_cost"][v]["median_share"]]
         for v in vw["views"]],
    )  # fmt: skip
    out += [f"Batch time the views add, per view that wrote rows: {_fmt(vw['added_share_per_view'])} of the"
            " Encounter-only batch.", ""]  # fmt: skip
    return out


# One section per scenario, in this order; each gets the scenario's results and the run's.
_SECTIONS: dict[str, Callable[[dict[str, Any], dict[str, Any]], list[str]]] = {
    "backfill": _md_backfill,
    "latency": _md_latency,
    "upsert": _md_upsert,
    "listing": _md_listing,
    "soak": _md_soak,
    "split": _md_split,
    "read": _md_read,
    "views": _md_views,
}


def _median_steps(batches: list[dict[str, Any]]) -> dict[str, float]:
    import statistics

    names = sorted({k for b in batches for k in b["steps"]})
    return {n: round(statistics.median(b["steps"].get(n, 0.0) for b in batches), 2) for n in names}


def _sum_phases(per_batch: dict[str, dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for phases in per_batch.values():
        for k, v in phases.items():
            total[k] = round(total.get(k, 0.0) + v, 2)
    return total


# -- plots -----------------------------------------------------------------------------------------------------


def plots(results: dict[str, Any], out: Path) -> list[Path]:
    """PNG plots: latency per batch, memory over the soak, upsert scaling, backfill, listing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    s = {k: v for k, v in results["scenarios"].items() if "error" not in v}

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)

    for name, (file_name, plot) in _PLOTS.items():
        if name in s:
            save(plot(plt, s), file_name)
    return made


def _plot_latency(plt: Any, s: dict[str, Any]) -> Any:
    """Land -> visible per file and the steps per batch, one column per trigger interval."""
    runs = list(s["latency"]["runs"].values())
    fig, axes = plt.subplots(2, len(runs), figsize=(6 * len(runs), 7), squeeze=False)
    for col, run in enumerate(runs):
        ax = axes[0][col]
        ax.plot(range(1, len(run["latencies"]) + 1), run["latencies"], ".", markersize=4)
        ax.set_title(f"trigger {run['trigger_seconds']} s: land -> visible per file")
        ax.set_xlabel("file (landing order)")
        ax.set_ylabel("seconds")
        _stacked_steps(axes[1][col], run["batches"], f"trigger {run['trigger_seconds']} s: steps per batch")
    return fig


def _plot_soak(plt: Any, s: dict[str, Any]) -> Any:
    """Driver memory, table layout and steps per batch over the soak."""
    so = s["soak"]
    fig, axes = plt.subplots(3, 1, figsize=(9, 9))
    mem = so["memory"]
    t = [m["t"] / 60 for m in mem]
    for key, label in (
        ("heap_after_gc_mb", "JVM live heap (after full GC)"),
        ("jvm_rss_mb", "JVM RSS"),
        ("python_rss_mb", "Python driver RSS"),
    ):
        axes[0].plot(t, [m[key] for m in mem], marker="o", markersize=3, label=label)
    axes[0].set_ylabel("MiB")
    axes[0].set_xlabel("minutes since the job started")
    axes[0].set_title("driver memory over the soak")
    axes[0].legend()
    lay = so["layouts"]
    axes[1].plot(
        [x["t"] / 60 for x in lay],
        [x["files_per_partition_avg"] for x in lay],
        marker="o",
        markersize=3,
        label="files per partition",
    )
    axes[1].set_xlabel("minutes since the arrival started")
    twin = axes[1].twinx()
    twin.plot(
        [x["t"] / 60 for x in lay],
        [x["avg_file_mb"] for x in lay],
        color="tab:orange",
        marker="s",
        markersize=3,
        label="average file MB",
    )
    axes[1].set_title("table layout (latest file slices)")
    axes[1].legend(loc="upper left")
    twin.legend(loc="lower right")
    _stacked_steps(axes[2], so["batches"], "steps per batch")
    return fig


def _plot_upsert(plt: Any, s: dict[str, Any]) -> Any:
    """Hudi phases per batch and the bronze step, per table size."""
    tables = list(s["upsert"]["tables"].values())
    fig, ax = plt.subplots(figsize=(8, 5))
    phases = sorted({k for t in tables for k in _sum_phases(t["hudi_phases"])})
    labels = [f"{t['table_rows']:,} rows" for t in tables]
    bottom = [0.0] * len(tables)
    for phase in phases:
        values = [_sum_phases(t["hudi_phases"]).get(phase, 0.0) / max(1, len(t["batches"])) for t in tables]
        ax.bar(labels, values, bottom=bottom, label=phase)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.plot(labels, [t["bronze_seconds_p50"] for t in tables], "k_", markersize=40, mew=2, label="bronze step p50")
    ax.set_ylabel("seconds per batch")
    ax.set_title(f"upsert of {s['upsert']['batch_rows']:,} rows: Hudi phases per batch")
    ax.legend()
    return fig


def _plot_backfill(plt: Any, s: dict[str, Any]) -> Any:
    """Wall and CPU seconds of ours and each peer."""
    b = s["backfill"]
    contenders = {"ours": b["ours"]}
    contenders |= {f"{kind}\n{mapping}": c for mapping, peers_ in b["peers"].items() for kind, c in peers_.items()}
    fig, ax = plt.subplots(figsize=(10, 4.5))
    names = list(contenders)
    width = 0.4
    xs = range(len(names))
    ax.bar([x - width / 2 for x in xs], [contenders[n]["seconds"] for n in names], width, label="wall s")
    ax.bar([x + width / 2 for x in xs], [contenders[n]["cpu_seconds"] for n in names], width, label="CPU s")
    ax.set_xticks(list(xs), names)
    ax.set_title(f"backfill of {s['backfill']['input']['encounters']:,} encounters")
    ax.legend()
    return fig


def _plot_listing(plt: Any, s: dict[str, Any]) -> Any:
    """Trigger overhead and restart time per prefix size."""
    prefixes = list(s["listing"]["prefixes"].values())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = [f"{p['files']:,} files {'archived' if p['archive'] else 'kept'}" for p in prefixes]
    ax.bar(labels, [p["overhead_seconds_p50"] for p in prefixes], label="trigger overhead p50 s")
    ax.plot(labels, [p["restart_seconds"] for p in prefixes], "ko", label="restart s")
    ax.set_title("listing scaling")
    ax.legend()
    return fig


# One plot per scenario, in this order: its file and the function drawing it from the scenarios' results.
_PLOTS: dict[str, tuple[str, Callable[[Any, dict[str, Any]], Any]]] = {
    "latency": ("latency.png", _plot_latency),
    "soak": ("soak.png", _plot_soak),
    "upsert": ("upsert_scaling.png", _plot_upsert),
    "backfill": ("backfill.png", _plot_backfill),
    "listing": ("listing.png", _plot_listing),
}


def _stacked_steps(ax: Any, batches: list[dict[str, Any]], title: str) -> None:
    names = sorted({k for b in batches for k in b["steps"]})
    bottom = [0.0] * len(batches)
    xs = list(range(1, len(batches) + 1))
    for name in names:
        values = [b["steps"].get(name, 0.0) for b in batches]
        ax.bar(xs, values, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.plot(xs, [b["seconds"] for b in batches], "k.", label="batch total")
    ax.set_title(title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("batch (after the warm-up batch)")
    ax.set_ylabel("seconds")
    ax.legend(fontsize=7)


# -- main ------------------------------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """JSON without NaN/inf (not JSON): such a figure becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, every figure still produced (smoke run)")
    parser.add_argument(
        "--only",
        default=",".join(scenarios.SCENARIOS),
        help=f"comma-separated scenarios (default: all: {','.join(scenarios.SCENARIOS)})",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply data sizes (default: %(default)s)")
    parser.add_argument(
        "--latency-seconds", type=float, metavar="S", help="arrival time per trigger interval (default: 120)"
    )
    parser.add_argument("--soak-seconds", type=float, metavar="S", help="length of the soak (default: 1800)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default: benchmarks/results)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORK, help="scratch folder (default: work/bench)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (tables, logs, event logs)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a job setting for every process of the run, e.g. layout.small_file_mb=0 (repeatable; A/B runs)",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="run N scenarios at a time: for smoke runs only, the timings then disturb each other (default: 1)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios, write results.json, results.md and the plots; 1 when a scenario failed."""
    parser = _parser()
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in scenarios.SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(scenarios.SCENARIOS)}")
    sizes = (scenarios.Sizes.quick() if args.quick else scenarios.Sizes()).scaled(args.scale)
    durations = {"latency_seconds": args.latency_seconds, "soak_seconds": args.soak_seconds}
    sizes = replace(sizes, **{name: value for name, value in durations.items() if value is not None})
    try:
        job_settings = parse_set(args.set)  # the job's own --set spelling
        conf.load(conf.env_file("local"), job_settings)  # an unknown key or a bad value fails here, not in each job
    except conf.ConfigError as exc:
        parser.error(f"--set: {exc}")
    bench = scenarios.Bench(work=args.workdir.resolve(), sizes=sizes, quick=args.quick, job_settings=job_settings)
    args.out.mkdir(parents=True, exist_ok=True)
    for kind in peers.BENCH_JARS:
        peers.fetch_jars(kind)  # before anything is timed
    began = time.monotonic()
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "scale": args.scale,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "sizes": sizes.__dict__,
        "job_settings": job_settings,
        "parallel": args.parallel,
        "scenarios": {},
    }
    lock = threading.Lock()

    def measure(name: str) -> None:
        print(f"bench {name} ...", file=sys.stderr, flush=True)
        start = time.monotonic()
        try:
            figures = scenarios.SCENARIOS[name](bench)
        except Exception:
            figures = {"error": traceback.format_exc(), "goals": []}
        figures["scenario_seconds"] = round(time.monotonic() - start, 1)
        with lock:
            results["scenarios"][name] = figures
            _write(results, args.out, began)  # after each scenario: a later failure keeps what was measured
        failed = " FAILED" if "error" in figures else ""
        print(f"bench {name}: {figures['scenario_seconds']} s{failed}", file=sys.stderr)

    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        list(pool.map(measure, wanted))
    results["scenarios"] = {name: results["scenarios"][name] for name in wanted}  # in the order asked
    paths = plots(results, args.out)
    _write(results, args.out, began)
    if not args.keep:
        shutil.rmtree(bench.work, ignore_errors=True)
    print((args.out / "results.md").read_text())
    print(f"wrote {args.out / 'results.json'}, results.md and {len(paths)} plots", file=sys.stderr)
    return 1 if any("error" in sc for sc in results["scenarios"].values()) else 0


def _write(results: dict[str, Any], out: Path, began: float) -> None:
    results["seconds"] = round(time.monotonic() - began, 1)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    (out / "results.json").write_text(json.dumps(_clean(results), indent=2))
    (out / "results.md").write_text(markdown(results))


if __name__ == "__main__":
    sys.exit(main())
