"""listing: triggers and a restart over a prefix of many already-ingested files vs few, with the deploy's
settings (source_archive), and the many again without it.
"""

from __future__ import annotations

import functools
import statistics
import time

from benchmarks import eventlog, procs
from benchmarks.scenarios.common import Bench, Figures, _land, _stage_arrivals, _wait, count_rows, event_conf, goal
from streaming import config as conf
from streaming.generate import generate


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
    where: tuple[str, ...] = ("--source", str(landing), "--warehouse", str(warehouse))
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
            _wait(functools.partial(_batches_done, job, i + 1), job, timeout=900)
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


def _batches_done(job: procs.Watched, count: int) -> bool:
    return len(job.lines_seen("batch")) >= count


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
        return round(float(prefix[figure]) - float(base[figure]), 3)

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
