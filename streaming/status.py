"""Whether the stream keeps up: files waiting in the source, recent batches, quarantine and table figures.

No JVM and no pyspark: the source is listed directly (local walk or S3 `list_objects_v2`), the ledger says which
files are committed, and the tables are read with hudi-rs through `streaming.query`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any

from streaming import query as q
from streaming.config import JobConfig, is_remote, is_s3
from streaming.ledger import open_ledger
from streaming.storage import local_path, split_s3_uri


@dataclass(frozen=True)
class Waiting:
    """Landed files the ledger has not committed, oldest first; ages are measured from `now`."""

    count: int
    oldest_age_seconds: float | None
    files: list[tuple[str, datetime]] = field(default_factory=list)


@dataclass(frozen=True)
class Batch:
    """One micro-batch from the ingest log."""

    batch_key: str
    started_at: datetime | None
    ended_at: datetime | None
    files: int
    rows_written: int
    rows_rejected: int
    seconds: float | None
    commit_instant: str | None


@dataclass(frozen=True)
class TableFigures:
    """Size of one table's current snapshot (latest file slices) and its active timeline."""

    name: str
    uri: str
    exists: bool
    rows: int = 0
    partitions: int = 0  # partition folders holding data; 0 for an unpartitioned table
    data_files: int = 0
    bytes: int = 0
    commits: int = 0  # completed data commits on the active timeline (archived ones are not counted)
    last_commit: str | None = None  # the newest data commit: a clustering rewrites files, it brings no new data
    last_commit_at: datetime | None = None
    clusterings: int = 0  # completed clusterings (`replacecommit`s: the job makes no other) on the active timeline
    last_clustering_at: datetime | None = None


@dataclass(frozen=True)
class Status:
    """Everything `bronze-encounter status` shows."""

    at: datetime
    source: str
    warehouse: str
    waiting: Waiting
    batches: list[Batch]
    quarantine: dict[str, int]
    tables: list[TableFigures]

    def to_json(self) -> dict[str, Any]:
        """The status as JSON-serialisable data (times as ISO 8601 text)."""
        return {
            "at": _iso(self.at),
            "source": self.source,
            "warehouse": self.warehouse,
            "waiting": {
                "count": self.waiting.count,
                "oldest_age_seconds": self.waiting.oldest_age_seconds,
                "files": [{"uri": uri, "modified": _iso(mtime)} for uri, mtime in self.waiting.files],
            },
            "batches": [_fields(b) for b in self.batches],
            "quarantine": dict(self.quarantine),
            "tables": [_fields(t) for t in self.tables],
        }


def _fields(record: Batch | TableFigures) -> dict[str, Any]:
    """A record's fields, its times as ISO 8601 text."""
    return {k: _iso(v) if isinstance(v, datetime) else v for k, v in dataclasses.asdict(record).items()}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


# -- waiting files ---------------------------------------------------------------------------------------------


def hidden(name: str) -> bool:
    """Whether Spark's file source skips a file or folder of this name (its InMemoryFileIndex rule)."""
    excluded = (name.startswith("_") and "=" not in name) or name.startswith(".") or name.endswith("._COPYING_")
    return excluded and not name.startswith(("_common_metadata", "_metadata"))


def landed_files(source: str) -> list[tuple[str, datetime]]:
    """Every file under `source` as the stream lists it: (URI as the ledger spells it, modification time)."""
    if is_s3(source):
        return _s3_files(source)
    if is_remote(source):
        raise ValueError(f"source {source!r}: only local folders and s3:// or s3a:// prefixes can be listed")
    return _local_files(local_path(source))


def _local_files(root: str) -> list[tuple[str, datetime]]:
    """Walk like Hadoop's local file system under Spark's recursive lookup; URIs as Hadoop Path prints them."""
    found: list[tuple[str, datetime]] = []
    if not os.path.isdir(root):
        return found  # the job creates the folder at start; nothing has landed yet
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not hidden(d)]
        for name in files:
            if hidden(name):
                continue
            path = os.path.join(folder, name)
            try:
                mtime = os.stat(path).st_mtime
            except FileNotFoundError:  # moved away between the listing and the stat
                continue
            # Hadoop's Path prints a local file as `file:/abs/path`, not percent-encoded (see storage.local_path).
            found.append((f"file:{os.path.abspath(path)}", datetime.fromtimestamp(mtime, UTC)))
    return found


def _s3_files(source: str) -> list[tuple[str, datetime]]:
    """Every object under an S3 prefix, its URI keeping the source's scheme (s3a:// stays s3a://)."""
    from streaming import aws

    scheme = source.split("://", 1)[0]
    bucket, prefix = split_s3_uri(source)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    found: list[tuple[str, datetime]] = []
    pages = aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            key = obj["Key"]
            parts = key[len(prefix) :].split("/")
            if key.endswith("/") or any(hidden(part) for part in parts):  # folder markers and hidden names
                continue
            found.append((f"{scheme}://{bucket}/{key}", obj["LastModified"].astimezone(UTC)))
    return found


def waiting_files(config: JobConfig, *, now: datetime | None = None) -> Waiting:
    """Files under `config.source` that the ledger has not committed, oldest first."""
    now = now or datetime.now(UTC)
    landed = landed_files(config.source)
    committed = _committed(config, [uri for uri, _ in landed])
    files = sorted(((uri, mtime) for uri, mtime in landed if uri not in committed), key=lambda f: (f[1], f[0]))
    oldest = (now - files[0][1]).total_seconds() if files else None
    return Waiting(len(files), oldest, files)


def _committed(config: JobConfig, uris: list[str]) -> set[str]:
    """The subset of `uris` the ledger has committed; a SQLite ledger not created yet has committed nothing."""
    if not uris:
        return set()
    if config.ledger.backend == "sqlite" and not Path(config.ledger_path).exists():
        return set()  # opening it would create it: status only looks
    ledger = open_ledger(config)
    try:
        return ledger.committed(uris)
    finally:
        ledger.close()


# -- tables ------------------------------------------------------------------------------------------------------


def recent_batches(config: JobConfig, last: int) -> list[Batch]:
    """The newest `last` batches of the ingest log, newest first."""
    log = q.quote_identifier(config.tables.ingest_log)
    rows = q.query(
        config,
        f"SELECT batch_key, started_at, ended_at, file_count, rows_written, rows_rejected, commit_instant"
        f" FROM {log} ORDER BY started_at DESC, batch_key DESC LIMIT {int(last)}",
    ).to_pylist()
    return [
        Batch(
            batch_key=r["batch_key"],
            started_at=r["started_at"],
            ended_at=r["ended_at"],
            files=int(r["file_count"] or 0),
            rows_written=int(r["rows_written"] or 0),
            rows_rejected=int(r["rows_rejected"] or 0),
            seconds=(r["ended_at"] - r["started_at"]).total_seconds() if r["started_at"] and r["ended_at"] else None,
            commit_instant=r["commit_instant"],
        )
        for r in rows
    ]


def quarantine_counts(config: JobConfig) -> dict[str, int]:
    """Quarantined records and files by reason, most frequent first."""
    table = q.quote_identifier(config.tables.quarantine)
    rows = q.query(config, f"SELECT reason, count(*) AS n FROM {table} GROUP BY reason ORDER BY n DESC, reason")
    return {str(r["reason"]): int(r["n"]) for r in rows.to_pylist()}


def table_figures(name: str, uri: str) -> TableFigures:
    """Rows, partitions, data files, bytes, commits and clusterings of one table, from hudi-rs (slices, timeline)."""
    from hudi import HudiReadOptions

    table = q.open_table(name, uri)
    if table is None:
        return TableFigures(name, uri, exists=False)
    slices = table.get_file_slices()
    # File slices carry only an estimate of their rows; reading one small column counts them exactly.
    rows = sum(b.num_rows for b in table.read(HudiReadOptions(projection=[q.ROW_COUNT_COLUMN])))
    timeline = table.get_timeline()
    by_time = attrgetter("timestamp")
    commits = sorted([*timeline.get_completed_commits(), *timeline.get_completed_deltacommits()], key=by_time)
    clusterings = sorted(timeline.get_completed_replacecommits(), key=by_time)
    last = commits[-1] if commits else None
    return TableFigures(
        name,
        uri,
        exists=True,
        rows=rows,
        partitions=len({s.partition_path for s in slices if s.partition_path}),
        data_files=len(slices),
        bytes=sum(s.total_size_bytes() for s in slices),
        commits=len(commits),
        last_commit=last.timestamp if last else None,
        last_commit_at=_instant_at(last) if last else None,
        clusterings=len(clusterings),
        last_clustering_at=_instant_at(clusterings[-1]) if clusterings else None,
    )


def _instant_at(instant: Any) -> datetime:
    return datetime.fromtimestamp(instant.epoch_mills / 1000, UTC)


def collect(config: JobConfig, *, now: datetime | None = None, last: int = 10) -> Status:
    """Gather the whole status: waiting files, the last `last` batches, quarantine reasons, table figures."""
    now = now or datetime.now(UTC)
    return Status(
        at=now,
        source=config.source,
        warehouse=config.warehouse,
        waiting=waiting_files(config, now=now),
        batches=recent_batches(config, last),
        quarantine=quarantine_counts(config),
        tables=[table_figures(name, uri) for name, uri in q.table_uris(config).items()],
    )


# -- text --------------------------------------------------------------------------------------------------------


def render_text(status: Status, *, files_shown: int = 10) -> str:
    """The status for people: what waits, how the last batches went, what was quarantined, how big tables are."""
    w = status.waiting
    lines = [
        f"status at {status.at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z",
        f"source     {status.source}",
        f"warehouse  {status.warehouse}",
    ]
    lines += ["", f"waiting files: {w.count}" + (f" (oldest {_age(w.oldest_age_seconds)} old)" if w.count else "")]
    lines += [f"  {mtime:%Y-%m-%d %H:%M:%S}Z  {uri}" for uri, mtime in w.files[:files_shown]]
    if w.count > files_shown:
        lines.append(f"  ... and {w.count - files_shown} more")

    lines += ["", "batches, newest first:" if status.batches else "batches: none yet"]
    if status.batches:
        header = ("started", "seconds", "files", "written", "rejected", "commit", "batch")
        cells = [
            (
                f"{b.started_at:%Y-%m-%d %H:%M:%S}Z" if b.started_at else "-",
                f"{b.seconds:.1f}" if b.seconds is not None else "-",
                str(b.files),
                str(b.rows_written),
                str(b.rows_rejected),
                b.commit_instant or "-",
                b.batch_key,
            )
            for b in status.batches
        ]
        lines += _columns(header, cells)

    total = sum(status.quarantine.values())
    lines += ["", f"quarantine: {total}" + ("" if total else " (none)")]
    lines += [f"  {reason:<24} {n:>8}" for reason, n in status.quarantine.items()]

    lines += ["", "tables:"]
    header = ("table", "rows", "partitions", "files", "size", "commits", "last commit", "last clustering")
    cells = [
        (
            t.name,
            str(t.rows),
            str(t.partitions),
            str(t.data_files),
            _size(t.bytes),
            str(t.commits),
            f"{t.last_commit_at:%Y-%m-%d %H:%M:%S}Z" if t.last_commit_at else "-",
            f"{t.last_clustering_at:%Y-%m-%d %H:%M:%S}Z" if t.last_clustering_at else "-",
        )
        if t.exists
        else (t.name, "-", "-", "-", "-", "-", "not written yet", "-")
        for t in status.tables
    ]
    lines += _columns(header, cells)
    return "\n".join(lines) + "\n"


def _columns(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Rows of cells as aligned text lines, first column left-aligned, the rest right-aligned."""
    widths = [max(len(c) for c in column) for column in zip(header, *rows, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        first, *rest = cells
        return "  " + "  ".join([first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))])

    return [line(header), *(line(r) for r in rows)]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
