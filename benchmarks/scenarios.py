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
import math
import os
import random
import shlex
import shutil
import statistics
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from benchmarks import eventlog, peers, procs
from streaming import config as conf
from streaming.generate import HOSPITALS, GeneratedSet, generate

Figures = dict[str, Any]
_In = TypeVar("_In")
_Out = TypeVar("_Out")


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is: the issue's sizes by default, tiny ones for `--quick` (every figure still made)."""

    backfill_files: int = 40  # 30 NDJSON files of `backfill_per_file` + 10 single resources: 300,010 encounters
    backfill_per_file: int = 10_000
    arrival_per_second: float = 2.0  # steady arrival: files per second, of `arrival_per_file` encounters
    arrival_per_file: int = 100
    latency_seconds: float = 120.0  # arrival time at each trigger interval
    latency_triggers: tuple[int, ...] = (2, 10)
    upsert_tables: tuple[int, ...] = (500_000, 5_000_000)
    upsert_batch: int = 10_000
    upsert_batches: int = 3
    upsert_moving: float = 0.10  # share of each update batch that moves to another hospital
    listing_files: tuple[int, ...] = (100, 100_000)  # ingested files: the fewest is the baseline (issue 33)
    listing_triggers: int = 10  # idle triggers observed per prefix
    sourcelog_entries: int = 100_000  # files a stream has logged when its source log compacts (benchmarks/sourcelog)
    soak_seconds: float = 1800.0
    soak_trigger: int = 10
    soak_sample_seconds: float = 30.0
    query_rows: int = 1_000_000  # the table `query_scale` queries

    @classmethod
    def quick(cls) -> Sizes:
        """Tiny sizes for the smoke run: a few thousand encounters, every figure still produced."""
        return cls(
            backfill_files=8,
            backfill_per_file=250,
            latency_seconds=1.0,  # 2 files: two land -> visible samples per trigger interval
            upsert_tables=(2_000, 8_000),
            upsert_batch=400,
            upsert_batches=1,
            listing_files=(10, 40),
            listing_triggers=2,
            sourcelog_entries=2_000,
            soak_seconds=1.0,  # the latency run at trigger 2 s serves as the soak (memory: start, every 8 s, end)
            soak_trigger=2,
            soak_sample_seconds=8.0,
            query_rows=2_000,
        )

    def scaled(self, factor: float) -> Sizes:
        """Data sizes times `factor` (encounters, table rows, file counts); rates and durations unchanged."""

        def n(value: int) -> int:
            return max(1, round(value * factor))

        return replace(
            self,
            backfill_per_file=n(self.backfill_per_file),
            upsert_tables=tuple(n(v) for v in self.upsert_tables),
            upsert_batch=n(self.upsert_batch),
            listing_files=tuple(n(v) for v in self.listing_files),
            sourcelog_entries=n(self.sourcelog_entries),
            query_rows=n(self.query_rows),
        )


# Quick runs only: C1 alone compiles enough for a few tiny batches and costs far less CPU per JVM (a one-batch
# `run --once`: 36 -> 21 CPU s, measured); a full run keeps the JVM's defaults, so its times are the product's.
QUICK_JVM_OPTIONS = "-XX:TieredStopAtLevel=1"


@dataclass(frozen=True)
class Bench:
    """Where a run works and writes, and how big it is."""

    work: Path
    sizes: Sizes
    quick: bool = False
    # Job settings every process of the run gets (`--set key=value`, dotted as the job's own `--set`): A/B runs.
    job_settings: Mapping[str, str] = field(default_factory=dict, hash=False)  # a dict: the Bench stays hashable
    _shared: dict[Any, Future[Any]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def fresh(self, name: str) -> Path:
        """An empty scratch folder for one scenario (what an earlier run left there is removed)."""
        path = self.work / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def scratch(self, name: str) -> Path:
        """Temporary files of the processes a run starts (Spark's, the JVM's, Python's) go under the workdir."""
        path = self.work / "tmp" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def spark_conf(self) -> dict[str, str]:
        """Spark settings of every process of the run: its scratch folders; in a quick run, a cheaper JIT."""
        options = [f"-Djava.io.tmpdir={shlex.quote(str(self.scratch('jvm')))}"]  # lz4's library, Hudi's spills
        if self.quick:
            options.append(QUICK_JVM_OPTIONS)
        return {"spark.local.dir": str(self.scratch("spark")), "spark.driver.extraJavaOptions": " ".join(options)}

    def settings(self, path: Path, *, trigger: int | None = None, spark_conf: Mapping[str, str] | None = None) -> Path:
        """A settings file for one process of the run (write_config with the run's Spark settings)."""
        spark = {**self.spark_conf(), **(spark_conf or {})}
        return write_config(path, trigger=trigger, spark_conf=spark, overrides=self.job_settings)

    def start(self, argv: list[str], *, log: Path) -> procs.Watched:
        """Start a process under measurement, its Python temporary files in the workdir."""
        return procs.Watched(argv, log=log, env={"TMPDIR": str(self.scratch("python"))})

    def run(self, argv: list[str], *, log: Path) -> procs.Finished:
        """Run a process under measurement to its end (ProcessFailed when it fails)."""
        return self.start(argv, log=log).wait()

    def once(self, key: Any, measure: Callable[[], _Out]) -> _Out:
        """`measure()` run once per key for every scenario that asks (they wait for the first), its result shared."""
        with self._lock:
            owner = key not in self._shared
            future = self._shared.setdefault(key, Future())
        if owner:
            try:
                future.set_result(measure())
            except BaseException as exc:
                future.set_exception(exc)
        return future.result()

    def each(self, measure: Callable[[_In], _Out], items: Sequence[_In]) -> list[_Out]:
        """`measure` over `items`: one after another in a full run (none disturbs another), at once in a quick run."""
        if not self.quick or len(items) < 2:
            return [measure(item) for item in items]
        with ThreadPoolExecutor(max_workers=len(items)) as pool:
            return list(pool.map(measure, items))


def goal(name: str, value: float | None, target: float, *, at_most: bool, valid: bool = True) -> Figures:
    """One goal of the issue: the measured value, the target and whether it is met (never by an invalid result)."""
    met = valid and value is not None and math.isfinite(value) and (value <= target if at_most else value >= target)
    return {
        "goal": name,
        "value": value,
        "target": f"{'<=' if at_most else '>='} {target:g}",
        "met": met,
        "valid": valid,
    }


def land_to_visible(landed: Mapping[str, float], visible_at: Mapping[str, float]) -> Figures:
    """Land -> visible seconds of each landed file, and whether every landed file became visible.

    A file missing from the commits seen (not ingested, or its commit missed) would drop out of the percentiles,
    and a file still waiting when the run ended is the slowest of all: such a result is marked invalid, not
    reported as a faster one.
    """
    latencies = [round(visible_at[name] - at, 3) for name, at in landed.items() if name in visible_at]
    return {
        "files_landed": len(landed),
        "files_visible": len(latencies),
        "valid": len(latencies) == len(landed),
        "latencies": latencies,
    }


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# -- shared helpers --------------------------------------------------------------------------------------------


def write_config(
    path: Path,
    *,
    trigger: int | None = None,
    spark_conf: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Path:
    """A settings file for the job: checkpoints_conf/local.toml with the bench's trigger, Spark settings and
    `overrides` ({"layout.small_file_mb": "0"}: text, converted to each setting's type when the job loads it)."""
    with conf.env_file("local").open("rb") as fh:
        settings = conf.nest(overrides or {}, into=tomllib.load(fh))
    if trigger is not None:
        settings["trigger_interval"] = f"{trigger} seconds"
    if spark_conf:
        settings.setdefault("spark", {}).setdefault("conf", {}).update(spark_conf)
    path.write_text(_toml(settings))
    return path


def _toml(table: Mapping[str, Any], prefix: str = "") -> str:
    """Just enough TOML for a settings dict: scalars first, then nested tables with dotted headers."""
    lines = [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in table.items() if not isinstance(v, Mapping)]
    for key, value in table.items():
        if isinstance(value, Mapping):
            name = f"{prefix}{json.dumps(key)}"
            lines += ["", f"[{name}]", _toml(value, f"{name}.")]
    return "\n".join(lines) + "\n"


def event_conf(directory: Path) -> dict[str, str]:
    """Spark settings that write the event log (jobs, stages, streaming progress) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    return {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": directory.resolve().as_uri(),
        # Report every idle trigger too (default: one every 10 s), so each trigger's listing time is seen.
        "spark.sql.streaming.noDataProgressEventInterval": "0",
    }


def count_rows(warehouse: Path, sql: str) -> list[dict[str, Any]]:
    """Rows of a query over the job's tables, read without a JVM (hudi-rs + DuckDB, `bronze-encounter query`)."""
    from streaming.ops import query

    config = conf.load(conf.env_file("local"), {"warehouse": str(warehouse)})
    return query.query(config, sql).to_pylist()


def parquet_codec(table_dir: Path) -> str:
    """The compression of the first Parquet file under a table folder (each contender's own default)."""
    import pyarrow.parquet as pq

    for path in sorted(table_dir.rglob("*.parquet")):
        if "metadata" not in path.parts and not path.name.startswith("."):
            return str(pq.ParquetFile(path).metadata.row_group(0).column(0).compression).lower()
    return "none"


def layout(table_dir: Path) -> Figures:
    """Files per partition and file sizes of a Hudi table: latest file slices (what a reader reads) and all files.

    The latest slices come from hudi-rs, which reads the timeline: a file group a clustering replaced stays on disk
    until a clean, but no reader reads it.
    """
    on_disk = sum(1 for _ in table_dir.glob("hospital_partition=*/*.parquet"))
    slices = _latest_slices(table_dir) if on_disk else []
    per_partition = Counter(s.partition_path for s in slices)
    sizes = [s.base_file_size for s in slices]
    return {
        "partitions": len(per_partition),
        "files": len(slices),
        "files_on_disk": on_disk,
        "files_per_partition_avg": round(len(slices) / len(per_partition), 2) if per_partition else 0.0,
        "files_per_partition_max": max(per_partition.values(), default=0),
        "avg_file_mb": round(statistics.fmean(sizes) / 2**20, 3) if sizes else 0.0,
    }


def _latest_slices(table_dir: Path, tries: int = 20, pause: float = 0.1) -> list[Any]:
    """hudi-rs's latest file slices of a table a job may be committing to right now.

    On a local disk Hudi creates a completed-commit file, then writes it: a read in between fails on the empty
    file ("EOF while parsing"). It is written within milliseconds, so read again.
    """
    from hudi import HudiTableBuilder

    for attempt in range(tries):
        try:
            return list(HudiTableBuilder.from_base_uri(str(table_dir)).build().get_file_slices())
        except Exception:  # hudi-rs raises one HudiCoreError for everything and does not export its class
            if attempt == tries - 1:
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")


def encounters_in(files: Iterable[Path]) -> int:
    """Encounters in generated files, counted from the files themselves: NDJSON lines, one per pretty file."""
    total = 0
    for path in files:
        if path.suffix == ".ndjson":
            total += sum(1 for line in path.read_bytes().splitlines() if line.strip())
        else:
            total += 1
    return total


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


# -- steady arrival (latency, soak) ----------------------------------------------------------------------------


def _stage_arrivals(staging: Path, *, files: int, per_file: int, seed: int) -> list[Path]:
    return list(generate(staging, files=files, per_file=per_file, seed=seed).files)


def _land(path: Path, landing: Path) -> tuple[str, float]:
    """Move a staged file into the landing folder, its modification time the landing time; returns (name, time)."""
    now = time.time()
    os.utime(path, (now, now))
    os.replace(path, landing / path.name)
    return path.name, now


def _commit_times(table: Path) -> dict[str, float]:
    """Completion time of each Hudi commit: the modification time of `.hoodie/<instant>.commit` (table version 6)."""
    times = {}
    for path in (table / ".hoodie").glob("*.commit"):
        try:
            times[path.name.split(".")[0]] = path.stat().st_mtime
        except FileNotFoundError:  # archived between the listing and the stat
            continue
    return times


class CommitWatch:
    """Completion times of a table's commits, polled while a run lasts.

    Hudi archives all but the newest ~30 commits off the active timeline, so a long run's early commits are gone by
    its end; polled every `every` seconds (a listing of `.hoodie`), none is missed: each stays for dozens of batches.
    """

    def __init__(self, table: Path, every: float = 1.0):
        self.table = table
        self.every = every
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def poll(self) -> dict[str, float]:
        """Add the commits on the timeline now; all seen so far."""
        for instant, at in _commit_times(self.table).items():
            self.seen.setdefault(instant, at)
        return self.seen

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.poll()

    def start(self) -> CommitWatch:
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        """Stop polling; all commits seen, the timeline's last state included."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.poll()


def steady(
    bench: Bench,
    name: str,
    *,
    trigger: int,
    seconds: float,
    sample_every: float | None = None,
) -> Figures:
    """Files land at a steady rate into a running job; land -> visible per file, each batch's steps, memory."""
    sizes = bench.sizes
    root = bench.fresh(name)
    landing, staging, warehouse = root / "landing", root / "staging", root / "warehouse"
    landing.mkdir()
    count = max(1, round(seconds * sizes.arrival_per_second))
    staged = _stage_arrivals(staging, files=count + 1, per_file=sizes.arrival_per_file, seed=21)
    expected = encounters_in(staged)
    config = bench.settings(root / "bench.toml", trigger=trigger)
    job = bench.start(
        procs.job("run", "--config", str(config), "--source", str(landing), "--warehouse", str(warehouse)),
        log=root / "job.log",
    )
    layouts: list[Figures] = []
    stop_sampling = threading.Event()
    table = warehouse / "bronze_encounter"
    watch = CommitWatch(table).start()

    def sample() -> None:  # its own thread: a full GC and two jcmd calls must not delay the arrivals
        while not stop_sampling.wait(sample_every):
            job.sample_memory()
            layouts.append({"t": round(time.monotonic() - began, 1), **layout(table)})

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        # A warm-up file first: arrival starts once the stream runs, so start-up is not counted as latency.
        _land(staged[0], landing)
        _wait(lambda: bool(job.lines_seen("batch")), job, timeout=600)
        began = time.monotonic()
        if sample_every:
            job.sample_memory()
            sampler.start()
        landed = _arrive(staged[1:], landing, began, sizes.arrival_per_second, job)

        def all_visible() -> bool:
            return sum(b["files"] for b in job.lines_seen("batch")) >= len(staged)

        _wait(all_visible, job, timeout=max(600.0, 10 * trigger))
        stop_sampling.set()
        if sample_every:
            sampler.join()
            job.sample_memory()
            layouts.append({"t": round(time.monotonic() - began, 1), **layout(table)})
    finally:
        stop_sampling.set()
        job.stop()
    try:
        done = job.wait(300)
    finally:
        commits = watch.stop()  # after the job's end: its last commits too
    logged = count_rows(
        warehouse, "SELECT batch_id, files, commit_instant, rows_written FROM bronze_encounter_ingest_log"
    )
    visible_at = {
        Path(uri).name: commits[r["commit_instant"]]
        for r in logged
        if r["commit_instant"] in commits
        for uri in r["files"]
    }
    seen = land_to_visible(landed, visible_at)
    latencies = seen["latencies"]
    warmup, *batches = _batches(done)
    counted = count_rows(warehouse, "SELECT count(*) AS n, count(DISTINCT encounter_id) AS k FROM bronze_encounter")
    return {
        "trigger_seconds": trigger,
        **seen,  # files landed and visible, `valid`, the latencies
        "encounters": expected,
        "rows": counted[0]["n"],
        "keys": counted[0]["k"],
        "latency_p50_seconds": percentile(latencies, 50),
        "latency_p95_seconds": percentile(latencies, 95),
        "latency_max_seconds": max(latencies, default=None),
        "warmup_batch": warmup,  # the first file, landed before the arrival started: JVM warm-up, not latency
        "batches": batches,
        "batch_seconds_p50": percentile([b["seconds"] for b in batches], 50),
        "memory": done.memory,
        "layouts": layouts,
        "layout": layout(table),
        "cpu_seconds": done.cpu_seconds,
    }


def _arrive(staged: list[Path], landing: Path, began: float, per_second: float, job: procs.Watched) -> dict[str, float]:
    """Land the files at `per_second` from `began` on (file name -> when it landed); stop early if the job exits."""
    landed: dict[str, float] = {}
    for i, path in enumerate(staged):
        due = began + i / per_second
        while (wait := due - time.monotonic()) > 0:
            time.sleep(min(wait, 0.2))
        name_, at = _land(path, landing)
        landed[name_] = at
        if not job.running():
            break
    return landed


def _batches(done: procs.Finished) -> list[Figures]:
    """The job's batches that took files, in order, each with its steps."""
    steps = done.batch_steps()
    batch_lines = {b["batch_id"]: b for _, b in done.events("batch")}
    return [
        {
            "batch_id": bid,
            "files": line["files"],
            "rows": line["rows_written"],
            "seconds": line["seconds"],
            "steps": steps.get(bid, {}),
        }
        for bid, line in sorted(batch_lines.items())
        if line["files"]
    ]


def _steady_run(bench: Bench, name: str, *, trigger: int, seconds: float, sample_every: float | None = None) -> Figures:
    """`steady`; in a quick run one run per trigger and duration, memory sampled, serves latency and soak alike."""
    if not bench.quick:
        return steady(bench, name, trigger=trigger, seconds=seconds, sample_every=sample_every)
    return bench.once(
        ("steady", trigger, seconds),
        lambda: steady(
            bench, f"steady-{trigger}s", trigger=trigger, seconds=seconds, sample_every=bench.sizes.soak_sample_seconds
        ),
    )


def _wait(condition: Callable[[], bool], job: procs.Watched, *, timeout: float) -> None:
    """Poll `condition` until true; fail when the job exits first or the time is up."""
    deadline = time.monotonic() + timeout
    while not condition():
        if not job.running():
            job.wait(check=True)  # raises with the job's log when it failed
            raise procs.ProcessFailed(f"the job exited before the benchmark was done (log {job.log})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark waited {timeout:.0f}s in vain (log {job.log})")
        time.sleep(0.2)


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


def _files_for(rows: int, per_file: int) -> int:
    """How many generated files hold at least `rows` encounters (every 4th file is a single resource)."""
    files = 1
    while (files - files // 4) * per_file + files // 4 < rows:
        files += 1
    return files


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
