"""Reading Spark event logs: streaming progress per trigger, Hudi's write phases, and a profile of jobs and stages.

    python -m benchmarks.eventlog EVENT_LOG_FILE_OR_DIR      # jobs, stages and Hudi phases of a run

The job writes one with `spark.eventLog.enabled` (the benchmarks set it through a settings file's [spark.conf]).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

Event = dict[str, Any]
_PROGRESS = "org.apache.spark.sql.streaming.StreamingQueryListener$QueryProgressEvent"

# Hudi names each Spark job it runs (`setJobStatus`) "<class>:<what>: <table>"; what each phase means.
HUDI_PHASES: tuple[tuple[str, str], ...] = (
    ("Building workload profile", "dedupe_index_profile"),  # pre-combine, GLOBAL_SIMPLE lookup + tagging, profile
    ("Tagging", "dedupe_index_profile"),
    ("Load latest base files", "dedupe_index_profile"),
    ("Doing partition and writing data", "write_files"),  # merge with old file versions, write Parquet
    ("Committing stats", "commit"),
    ("Obtaining marker files", "commit"),
    ("Parallel listing", "commit"),
    ("Clean", "clean_archive"),
    ("clean", "clean_archive"),
    ("Archiv", "clean_archive"),
)


def read(path: Path) -> list[Event]:
    """Every event of the event log files under `path` (or the one file), in order; a half-written line is skipped."""
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    events = []
    for file in files:
        if not file.is_file():
            continue
        with file.open() as fh:
            for line in fh:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
    return events


def progress(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Each trigger that ran a batch: when it ended, how long it took, its listing, the batch, the rest, rows.

    Spark 3.5 reports an idle trigger as a QueryIdleEvent without durations; only triggers with data are here.
    """
    found = []
    for event in events:
        if event.get("Event") != _PROGRESS:
            continue
        p = event["progress"]
        durations = p.get("durationMs", {})
        started = datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00")).timestamp()
        trigger = durations.get("triggerExecution", 0) / 1000
        found.append(
            {
                "batch_id": p["batchId"],
                "ended_at": started + trigger,
                "trigger_seconds": trigger,
                "latest_offset_seconds": durations.get("latestOffset", 0) / 1000,  # listing the source
                "batch_seconds": durations.get("addBatch", 0) / 1000,  # foreachBatch: the job's own batch
                # Everything else a trigger spends: listing, offset and commit logs (source log compaction).
                "stream_overhead_seconds": (durations.get("triggerExecution", 0) - durations.get("addBatch", 0)) / 1000,
                "rows": sum(source.get("numInputRows", 0) for source in p.get("sources", [])),
            }
        )
    return found


def jobs(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Spark jobs with their description, micro-batch, duration and stages (tasks, run/CPU time, I/O)."""
    found: dict[int, dict[str, Any]] = {}
    stages: dict[int, dict[str, Any]] = {}
    for event in events:
        kind = event.get("Event")
        if kind == "SparkListenerJobStart":
            props = event.get("Properties") or {}
            found[event["Job ID"]] = {
                "job": event["Job ID"],
                "start": event["Submission Time"] / 1000,
                "end": None,
                "description": (props.get("spark.job.description") or "").split("\n")[0],
                "batch": props.get("streaming.sql.batchId"),
                "stage_ids": event["Stage IDs"],
            }
        elif kind == "SparkListenerJobEnd" and event["Job ID"] in found:
            found[event["Job ID"]]["end"] = event["Completion Time"] / 1000
        elif kind == "SparkListenerStageCompleted":
            info = event["Stage Info"]
            acc = {a["Name"]: a.get("Value") for a in info.get("Accumulables", [])}

            def metric(name: str, scale: float = 1.0, acc: dict[str, Any] = acc) -> float:
                return round(float(acc.get(f"internal.metrics.{name}", 0) or 0) / scale, 2)

            stages[info["Stage ID"]] = {
                "stage": info["Stage ID"],
                "name": info["Stage Name"],
                "tasks": info["Number of Tasks"],
                "seconds": round((info.get("Completion Time", 0) - info.get("Submission Time", 0)) / 1000, 2),
                "run_seconds": metric("executorRunTime", 1000),
                "cpu_seconds": metric("executorCpuTime", 1e9),
                "gc_seconds": metric("jvmGCTime", 1000),
                "input_records": metric("input.recordsRead"),
                "shuffle_write_records": metric("shuffle.write.recordsWritten"),
                "shuffle_write_mb": metric("shuffle.write.bytesWritten", 2**20),
                "shuffle_read_records": metric("shuffle.read.recordsRead"),
                "spill_mb": metric("diskBytesSpilled", 2**20),
            }
    for job in found.values():
        job["seconds"] = round(job["end"] - job["start"], 2) if job["end"] else None
        job["stages"] = [stages[s] for s in job.pop("stage_ids") if s in stages]  # skipped stages never complete
    return sorted(found.values(), key=lambda j: j["job"])


def hudi_phase(description: str, table: str, *, has_metadata: bool = True) -> str | None:
    """The write phase a Hudi-named job (`<class>:<what>: <table>`) belongs to for `table`, else None.

    Jobs of the table's metadata table count as one phase; the metadata writer's own jobs do not name the table,
    so they count for `table` when it has a metadata table (`has_metadata`).
    """
    if ":" not in description:
        return None  # not Hudi's: the stream's own jobs (read, flatten, statistics) carry the query's name
    subject = description.rsplit(":", 1)[-1].strip()
    if subject == f"{table}_metadata" or f"/{table}/.hoodie/metadata" in description:
        return "metadata_table"
    if "MetadataWriter" in description:
        return "metadata_table" if has_metadata else None
    if subject != table and f"/{table}/" not in description:
        return None
    for marker, phase in HUDI_PHASES:
        if marker in description:
            return phase
    return "other"


def hudi_phases(events: Iterable[Event], *, table: str) -> dict[str, dict[str, float]]:
    """Seconds per Hudi write phase of `table`, per micro-batch id (job wall time, not task time)."""
    found = jobs(events)
    has_metadata = any(j["description"].rstrip().endswith(f"{table}_metadata") for j in found)
    per_batch: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for job in found:
        phase = hudi_phase(job["description"], table, has_metadata=has_metadata)
        if phase and job["seconds"] is not None:
            per_batch[str(job["batch"])][phase] += job["seconds"]
    return {b: {k: round(v, 2) for k, v in phases.items()} for b, phases in per_batch.items()}


def render(events: list[Event]) -> str:
    """A readable profile: every job (with its batch and Hudi phase) and its stages, then the phases per batch."""
    lines = []
    origin = next((e["Timestamp"] / 1000 for e in events if e.get("Event") == "SparkListenerApplicationStart"), 0.0)
    for job in jobs(events):
        lines.append(
            f"job {job['job']:3d} batch {job['batch'] or '-':>3} t={job['start'] - origin:7.1f}s "
            f"{job['seconds'] if job['seconds'] is not None else float('nan'):7.2f}s  {job['description'][:100]}"
        )
        for s in job["stages"]:
            lines.append(
                f"    stage {s['stage']:3d} {s['seconds']:7.2f}s tasks={s['tasks']:3d} run={s['run_seconds']:.1f}s"
                f" cpu={s['cpu_seconds']:.1f}s gc={s['gc_seconds']:.1f}s in={s['input_records']:.0f}"
                f" shuffle_w={s['shuffle_write_records']:.0f}/{s['shuffle_write_mb']:.1f}MB"
                f" shuffle_r={s['shuffle_read_records']:.0f} spill={s['spill_mb']:.1f}MB  {s['name'][:60]}"
            )
    for table in sorted(_tables(events)):
        lines.append(f"hudi phases of {table}: {json.dumps(hudi_phases(events, table=table))}")
    for p in progress(events):
        lines.append(
            f"trigger batch {p['batch_id']}: {p['trigger_seconds']:.2f}s, listing {p['latest_offset_seconds']:.2f}s,"
            f" {p['rows']} input rows"
        )
    return "\n".join(lines)


def _tables(events: list[Event]) -> set[str]:
    found = {
        j["description"].rsplit(":", 1)[-1].strip() for j in jobs(events) if "workload profile" in j["description"]
    }
    return {t for t in found if not t.endswith("_metadata")}


if __name__ == "__main__":
    print(render(read(Path(sys.argv[1]))))
