"""What the benchmark scenarios share: their sizes (Sizes), the run (Bench), goal(), the helpers that write
settings and read tables, and the steady arrival into a running job (latency and soak).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import statistics
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from benchmarks import procs
from streaming import config as conf
from streaming.generate import generate

Figures = dict[str, Any]
_In = TypeVar("_In")
_Out = TypeVar("_Out")


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is: the full sizes by default, tiny ones for `--quick` (every figure still made)."""

    backfill_files: int = 40  # 30 NDJSON files of `backfill_per_file` + 10 single resources: 300,010 encounters
    backfill_per_file: int = 10_000
    arrival_per_second: float = 2.0  # steady arrival: files per second, of `arrival_per_file` encounters
    arrival_per_file: int = 100
    latency_seconds: float = 120.0  # arrival time at each trigger interval
    latency_triggers: tuple[int, ...] = (2, 10)
    upsert_tables: tuple[int, ...] = (500_000, 5_000_000)
    upsert_batch: int = 10_000
    upsert_batches: int = 2  # per update variant (upsert.VARIANTS: six)
    listing_files: tuple[int, ...] = (100, 100_000)  # ingested files: the fewest is the baseline
    listing_triggers: int = 10  # idle triggers observed per prefix
    sourcelog_entries: int = 100_000  # files a stream has logged when its source log compacts (benchmarks/sourcelog)
    soak_seconds: float = 1800.0
    soak_trigger: int = 10
    soak_sample_seconds: float = 30.0
    soak_seed_rows: int = 1_000_000  # the table the soak's arrivals go into (bulk-inserted before it starts)
    soak_cluster_every_seconds: int = 900  # layout.cluster_every_seconds in the soak: clusterings inside 30 minutes
    query_rows: int = 1_000_000  # the table `query_scale` queries
    views_batches: int = 4  # the bulk export landed in this many parts: one batch each (views)
    views_repeat: int = 2  # Encounter alone and with every view, alternated this many times

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
            soak_seconds=1.0,  # two files into a seeded table (memory: start, every 8 s, end)
            soak_trigger=2,
            soak_sample_seconds=8.0,
            soak_seed_rows=500,
            soak_cluster_every_seconds=1,
            query_rows=2_000,
            views_batches=2,
            views_repeat=1,
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
            soak_seed_rows=n(self.soak_seed_rows),
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

    def settings(
        self,
        path: Path,
        *,
        trigger: int | None = None,
        spark_conf: Mapping[str, str] | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> Path:
        """A settings file for one process of the run (write_config with the run's Spark settings); the run's own
        job settings win over a scenario's `overrides`."""
        spark = {**self.spark_conf(), **(spark_conf or {})}
        settings = {**(overrides or {}), **self.job_settings}
        return write_config(path, trigger=trigger, spark_conf=spark, overrides=settings)

    def start(self, argv: list[str], *, log: Path) -> procs.Watched:
        """Start a process under measurement, its Python temporary files in the workdir."""
        return procs.Watched(argv, log=log, env={"TMPDIR": str(self.scratch("python"))})

    def run(self, argv: list[str], *, log: Path) -> procs.Finished:
        """Run a process under measurement to its end (ProcessFailed when it fails)."""
        return self.start(argv, log=log).wait()

    def each(self, measure: Callable[[_In], _Out], items: Sequence[_In]) -> list[_Out]:
        """`measure` over `items`: one after another in a full run (none disturbs another), at once in a quick run."""
        if not self.quick or len(items) < 2:
            return [measure(item) for item in items]
        with ThreadPoolExecutor(max_workers=len(items)) as pool:
            return list(pool.map(measure, items))


def goal(name: str, value: float | None, target: float, *, at_most: bool, valid: bool = True) -> Figures:
    """One goal: the measured value, the target and whether it is met (never by an invalid result)."""
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
    rows: list[dict[str, Any]] = query.query(config, sql).to_pylist()
    return rows


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


# The footer key Hudi keeps its bloom filter under (a base64 text, ~431 KB at Hudi's default size).
BLOOM_FILTER_KEY = b"org.apache.hudi.bloomfilter"


def footprint(table_dir: Path) -> Figures:
    """Bytes per row and Parquet footer bytes of a Hudi table's latest files (what a reader reads).

    A footer is the file's Thrift metadata (its key-value metadata, Hudi's bloom filter among them, included) plus
    the 8 bytes of its length and magic: what every reader fetches before the first row.
    """
    import pyarrow.parquet as pq

    files = [table_dir / s.base_file_relative_path() for s in _latest_slices(table_dir)]
    metas = [pq.ParquetFile(f).metadata for f in files]
    sizes = [f.stat().st_size for f in files]
    rows = sum(m.num_rows for m in metas)
    footers = sum(m.serialized_size + 8 for m in metas)
    key_value = sum(len(k) + len(v) for m in metas for k, v in (m.metadata or {}).items())
    bloom = sum(len((m.metadata or {}).get(BLOOM_FILTER_KEY, b"")) for m in metas)
    return {
        "files": len(files),
        "rows": rows,
        "bytes": sum(sizes),
        "bytes_per_row": round(sum(sizes) / rows, 1) if rows else None,
        "footer_bytes": footers,
        "footer_share": round(footers / sum(sizes), 4) if sizes else None,
        "key_value_bytes": key_value,
        "bloom_filter_bytes": bloom,
        "max_file_bytes": max(sizes, default=0),
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


def _files_for(rows: int, per_file: int) -> int:
    """How many generated files hold at least `rows` encounters (every 4th file is a single resource)."""
    files = 1
    while (files - files // 4) * per_file + files // 4 < rows:
        files += 1
    return files


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


def seed_table(bench: Bench, root: Path, warehouse: Path, rows: int, *, seed: int) -> Figures:
    """bronze_encounter of `rows` generated encounters (`seed`), bulk-inserted by one process (`benchmarks.peers
    seed`) before a run starts; the files are dropped once the table holds them. Rows and seconds taken."""
    base = root / "base"
    per_file = min(10_000, max(1, rows // 8))
    started = time.monotonic()
    generated = generate(base, files=_files_for(rows, per_file), per_file=per_file, seed=seed)
    generate_seconds = time.monotonic() - started
    seeded = bench.run(
        procs.python(
            "-m", "benchmarks.peers", "seed", "--config", str(bench.settings(root / "seed.toml")),
            "--source", str(base), "--warehouse", str(warehouse),
        ),
        log=root / "seed.log",
    )  # fmt: skip
    shutil.rmtree(base)
    return {
        "rows": len(generated.encounter_ids),
        "generate_seconds": round(generate_seconds, 1),
        "seed_seconds": round(seeded.wall_seconds, 1),
    }


def steady(
    bench: Bench,
    name: str,
    *,
    trigger: int,
    seconds: float,
    sample_every: float | None = None,
    seed_rows: int = 0,
    overrides: Mapping[str, str] | None = None,
) -> Figures:
    """Files land at a steady rate into a running job; land -> visible per file, each batch's steps, memory.

    `seed_rows`: the table already holds that many encounters when the job starts (`seed_table`); `overrides`: job
    settings of this run.
    """
    sizes = bench.sizes
    root = bench.fresh(name)
    landing, staging, warehouse = root / "landing", root / "staging", root / "warehouse"
    landing.mkdir()
    seeded = seed_table(bench, root, warehouse, seed_rows, seed=41) if seed_rows else {"rows": 0}
    count = max(1, round(seconds * sizes.arrival_per_second))
    staged = _stage_arrivals(staging, files=count + 1, per_file=sizes.arrival_per_file, seed=21)
    expected = encounters_in(staged)
    config = bench.settings(root / "bench.toml", trigger=trigger, overrides=overrides)
    job = bench.start(
        procs.job("run", "--config", str(config), "--source", str(landing), "--warehouse", str(warehouse)),
        log=root / "job.log",
    )
    layouts: list[Figures] = []
    stop_sampling = threading.Event()
    table = warehouse / "bronze_encounter"
    watch = CommitWatch(table).start()
    # The metadata table's compactions complete as `.commit` on its own timeline (its writes are deltacommits).
    compactions = CommitWatch(table / ".hoodie" / "metadata").start()

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
            return bool(sum(b["files"] for b in job.lines_seen("batch")) >= len(staged))

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
        compacted = compactions.stop()
    seen = land_to_visible(landed, _visible_at(warehouse, commits))
    latencies = seen["latencies"]
    warmup, *batches = _batches(done)
    counted = count_rows(warehouse, "SELECT count(*) AS n, count(DISTINCT encounter_id) AS k FROM bronze_encounter")
    return {
        "trigger_seconds": trigger,
        **seen,  # files landed and visible, `valid`, the latencies
        "seeded": seeded,  # rows in the table before the run, and the seed's wall time
        "encounters": expected,
        "rows": counted[0]["n"],
        "keys": counted[0]["k"],
        "latency_p50_seconds": percentile(latencies, 50),
        "latency_p95_seconds": percentile(latencies, 95),
        "latency_max_seconds": max(latencies, default=None),
        "warmup_batch": warmup,  # the first file, landed before the arrival started: JVM warm-up, not latency
        "batches": batches,
        "batch_seconds_p50": percentile([b["seconds"] for b in batches], 50),
        # Metadata-table compactions completed while the files arrived (not the seed's own).
        "metadata_compactions": sum(1 for at in compacted.values() if at >= began),
        "memory": done.memory,
        "layouts": layouts,
        "layout": layout(table),
        "cpu_seconds": done.cpu_seconds,
    }


def _visible_at(warehouse: Path, commits: Mapping[str, float]) -> dict[str, float]:
    """File name -> when the bronze commit holding it completed (the ingest log names each batch's files)."""
    logged = count_rows(warehouse, "SELECT files, commit_instant FROM bronze_encounter_ingest_log")
    return {
        Path(uri).name: commits[r["commit_instant"]]
        for r in logged
        if r["commit_instant"] in commits
        for uri in r["files"]
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
            "services": line.get("services", []),  # the table services the job ran after this batch's commit
        }
        for bid, line in sorted(batch_lines.items())
        if line["files"]
    ]


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
