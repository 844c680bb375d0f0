"""Whether the stream keeps up: a verdict (OK, BEHIND, STALLED), the backlog, the writer, batches and tables.

No JVM and no pyspark: the backlog comes from one bounded listing of the source against the ledger
(`streaming.ops.backlog`, which the job's metrics timer calls too), the writer lease from the ledger store, the tables
from hudi-rs through `streaming.ops.query`, and their pending instants from `.hoodie/`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any

from streaming.adapters.storage import local_path, split_s3_uri
from streaming.config import JobConfig, StatusConfig, is_remote, is_s3, view_table_names
from streaming.ledger import BatchIntent, LeaseState
from streaming.ledger.lease import lease_name
from streaming.ledger.log_summary import LogSummary
from streaming.ops import query as q
from streaming.ops.backlog import (
    EXAMPLES,
    Backlog,
    Waiting,
    backlog,
    hidden,
    landed_files,
    open_ledger_if_any,
    waiting_files,
)

# What other modules (the CLI, the metrics timer) import from here, wherever it is defined.
__all__ = [
    "BEHIND",
    "EXAMPLES",
    "OK",
    "STALLED",
    "Backlog",
    "Status",
    "Verdict",
    "Waiting",
    "backlog",
    "collect",
    "hidden",
    "judge",
    "landed_files",
    "ledger_view",
    "render_text",
    "waiting_files",
]

OK, BEHIND, STALLED = "OK", "BEHIND", "STALLED"


# -- batches and tables ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """One micro-batch from the ingest log."""

    batch_key: str
    run_id: str | None
    started_at: datetime | None
    ended_at: datetime | None
    files: int
    files_already_committed: int
    rows_written: int
    rows_deleted: int
    rows_rejected: int
    rows_skipped: int
    rows_stale: int | None  # None: not known (a row recovery wrote, or one written before they were counted)
    seconds: float | None
    lag_seconds: float | None  # oldest file's modification time to the batch's end; None: not known (as above)
    commit_instant: str | None
    # False: committed, its ingest-log row still waiting in the ledger (written every `ingest_log.every_batches`)
    logged: bool = True


def waiting_batch(intent: BatchIntent, summary: str) -> Batch:
    """A committed batch whose ingest-log row waits in the ledger, from its intent and the ledger's summary."""
    r = LogSummary.from_json(summary).row(intent)
    started, ended, stale = r["started_at"], r["ended_at"], r.get("rows_stale")
    return Batch(
        batch_key=r["batch_key"],
        run_id=r["run_id"],
        started_at=started,
        ended_at=ended,
        files=r["file_count"],
        files_already_committed=r["files_already_committed"],
        **{name: int(r.get(name) or 0) for name in ("rows_written", "rows_deleted", "rows_rejected", "rows_skipped")},
        rows_stale=None if stale is None else int(stale),
        seconds=None if ended is None else (ended - started).total_seconds(),
        lag_seconds=r["lag_seconds"],
        commit_instant=r["commit_instant"],
        logged=False,
    )


# The ingest log's columns `status` shows; a log written by an earlier release may lack the later ones.
_LOG_COLUMNS = (
    "batch_key",
    "run_id",
    "started_at",
    "ended_at",
    "file_count",
    "files_already_committed",
    "rows_written",
    "rows_deleted",
    "rows_rejected",
    "rows_skipped",
    "rows_stale",
    "lag_seconds",
    "commit_instant",
)


def recent_batches(config: JobConfig, last: int) -> list[Batch]:
    """The newest `last` batches of the ingest log, newest first."""
    name = config.tables.ingest_log
    table = q.open_table(name, config.table_uri(name))
    if table is None or last <= 0:
        return []
    present = {f.name for f in table.get_schema()}
    columns = ", ".join(c if c in present else f"NULL AS {c}" for c in _LOG_COLUMNS)
    rows = q.query(
        config,
        f"SELECT {columns} FROM {q.quote_identifier(name)} ORDER BY started_at DESC, batch_key DESC LIMIT {int(last)}",
    ).to_pylist()
    return [
        Batch(
            batch_key=r["batch_key"],
            run_id=r["run_id"],
            started_at=r["started_at"],
            ended_at=r["ended_at"],
            files=int(r["file_count"] or 0),
            files_already_committed=int(r["files_already_committed"] or 0),
            rows_written=int(r["rows_written"] or 0),
            rows_deleted=int(r["rows_deleted"] or 0),
            rows_rejected=int(r["rows_rejected"] or 0),
            rows_skipped=int(r["rows_skipped"] or 0),
            rows_stale=None if r["rows_stale"] is None else int(r["rows_stale"]),
            seconds=(r["ended_at"] - r["started_at"]).total_seconds() if r["started_at"] and r["ended_at"] else None,
            lag_seconds=r["lag_seconds"],
            commit_instant=r["commit_instant"],
        )
        for r in rows
    ]


def quarantine_counts(config: JobConfig) -> dict[str, int]:
    """Quarantined records and files by reason, most frequent first."""
    table = q.quote_identifier(config.tables.quarantine)
    rows = q.query(config, f"SELECT reason, count(*) AS n FROM {table} GROUP BY reason ORDER BY n DESC, reason")
    return {str(r["reason"]): int(r["n"]) for r in rows.to_pylist()}


@dataclass(frozen=True)
class Instant:
    """An instant on a table's timeline that has not completed: `requested` (planned) or `inflight` (started)."""

    instant: str
    action: str  # commit, replacecommit (the job's only one: a clustering plan), clean, rollback, ...
    state: str


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
    pending: tuple[Instant, ...] = ()  # instants requested or inflight, oldest first


def table_figures(name: str, uri: str) -> TableFigures:
    """Rows, partitions, data files, bytes, commits, clusterings and pending instants of one table (hudi-rs)."""
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
        pending=pending_instants(uri),
    )


def _instant_at(instant: Any) -> datetime:
    return datetime.fromtimestamp(instant.epoch_mills / 1000, UTC)


# A timeline file of table version 6: `<instant>.<action>[.requested|.inflight]`; a commit's inflight file is
# `<instant>.inflight`.
_TIMELINE_FILE = re.compile(r"^(\d{14,})\.([a-z]+)(?:\.(requested|inflight))?$")


def pending_instants(uri: str) -> tuple[Instant, ...]:
    """Instants of the table at `uri` requested or inflight and not completed, read from `.hoodie/` (hudi-rs
    shows only completed ones). A pending clustering plan makes Hudi refuse upserts into its file groups."""
    found: dict[str, tuple[set[str], set[str]]] = {}  # instant -> (actions named, states seen)
    for name in _timeline_names(uri):
        match = _TIMELINE_FILE.match(name)
        if not match:
            continue
        instant, action, state = match.group(1), match.group(2), match.group(3) or "completed"
        actions, states = found.setdefault(instant, (set(), set()))
        if action == "inflight":  # `<instant>.inflight`: a commit under way (its requested file names the action)
            states.add("inflight")
            continue
        actions.add(action)
        states.add(state)
    return tuple(
        Instant(instant, min(actions) if actions else "commit", "inflight" if "inflight" in states else "requested")
        for instant, (actions, states) in sorted(found.items())
        if "completed" not in states
    )


def _timeline_names(uri: str) -> list[str]:
    """File names directly under a table's `.hoodie/` (the active timeline of table version 6)."""
    if not is_remote(uri):
        folder = Path(local_path(uri)) / ".hoodie"
        return [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    if not is_s3(uri):
        return []
    from streaming.adapters import aws

    bucket, key = split_s3_uri(uri)
    prefix = key.rstrip("/") + "/.hoodie/"
    names: list[str] = []
    # Delimiter: the folders below (metadata, .aux, archived) are not read; archiving keeps the rest short.
    for page in aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        names += [obj["Key"][len(prefix) :] for obj in page.get("Contents", [])]
    return names


# -- the verdict -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """`OK`, `BEHIND` or `STALLED`, and why, in one line."""

    state: str
    reason: str


def judge(
    backlog: Backlog,
    *,
    last_commit_at: datetime | None,
    lease: LeaseState | None,
    settings: StatusConfig,
    now: datetime,
) -> Verdict:
    """Whether the stream keeps up with its source.

    STALLED: files wait and the writer lease expired unreleased (the job holding it died), or the oldest file has
    waited `stalled_seconds` and no batch committed for as long. BEHIND: the oldest waiting file is older than
    `behind_seconds`. Otherwise OK.
    """
    files = _files(backlog.waiting, backlog.truncated)
    wait = "waits" if backlog.waiting == 1 and not backlog.truncated else "wait"
    oldest = backlog.oldest_waiting_seconds
    since = None if last_commit_at is None else (now - last_commit_at).total_seconds()
    committed = "no batch has ever committed" if since is None else f"the last batch committed {_age(since)} ago"
    if backlog.waiting and lease is not None and not lease.released and lease.expires_at <= now:
        return Verdict(
            STALLED,
            f"{files} {wait} and the writer lease of run {lease.owner} expired"
            f" {_age((now - lease.expires_at).total_seconds())} ago without being released: its job stopped or died",
        )
    if (
        oldest is not None
        and oldest >= settings.stalled_seconds
        and (since is None or since >= settings.stalled_seconds)
    ):
        return Verdict(
            STALLED,
            f"{files} {wait}, the oldest for {_age(oldest)}, and {committed}"
            f" (status.stalled_seconds = {settings.stalled_seconds})",
        )
    if oldest is not None and oldest > settings.behind_seconds:
        return Verdict(
            BEHIND,
            f"{'' if backlog.waiting == 1 else 'the oldest of '}{files} waiting is {_age(oldest)} old"
            f" (status.behind_seconds = {settings.behind_seconds});"
            f" {committed}",
        )
    if not backlog.waiting:
        return Verdict(OK, "no file waits" + (f"; {committed}" if since is not None else ""))
    return Verdict(OK, f"{files} {wait}, the oldest {_age(oldest)} old; {committed}")


def _files(n: int, at_least: bool) -> str:
    return ("at least " if at_least else "") + (f"{n:,} file" if n == 1 else f"{n:,} files")


# -- everything `status` shows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """Everything `bronze-encounter status` shows."""

    at: datetime
    source: str
    warehouse: str
    settings: StatusConfig
    source_archive: str
    verdict: Verdict
    backlog: Backlog
    lease: LeaseState | None
    # Whether the lease's run has a batch in the ingest log (the newest is its): False is a run that found nothing.
    run_ingested: bool | None
    batches: list[Batch]
    quarantine: dict[str, int]
    tables: list[TableFigures]
    log_waiting: int = 0  # committed batches whose ingest-log rows wait in the ledger

    @property
    def waiting(self) -> Waiting:
        return Waiting(self.backlog.waiting, self.backlog.oldest_waiting_seconds, list(self.backlog.waiting_files))

    @property
    def listing_grows(self) -> bool:
        """Committed files still in the source passed `status.listing_warn_files`: each trigger lists them again."""
        return self.backlog.listed_committed >= self.settings.listing_warn_files

    def to_json(self) -> dict[str, Any]:
        """The status as JSON-serialisable data (times as ISO 8601 text)."""
        b, s = self.backlog, self.settings
        return {
            "at": _iso(self.at),
            "source": self.source,
            "warehouse": self.warehouse,
            "verdict": {
                "state": self.verdict.state,
                "reason": self.verdict.reason,
                "behind_seconds": s.behind_seconds,
                "stalled_seconds": s.stalled_seconds,
                "last_commit_at": _iso(last_commit_at(self.tables)),
            },
            "waiting": {
                "count": b.waiting,
                "oldest_age_seconds": b.oldest_waiting_seconds,
                "files": [{"uri": uri, "modified": _iso(mtime)} for uri, mtime in b.waiting_files],
            },
            "overwritten": {"count": b.overwritten, "files": list(b.overwritten_files)},
            "ignored": {"count": b.ignored, "files": list(b.ignored_files)},
            "listing": {
                "listed": b.listed,
                "listed_committed": b.listed_committed,
                "truncated": b.truncated,
                "max_listed": s.max_listed,
                "grows": self.listing_grows,
                "listing_warn_files": s.listing_warn_files,
                "source_archive": self.source_archive or None,
            },
            "lease": None if self.lease is None else {**_fields(self.lease), "run_ingested": self.run_ingested},
            "batches": [_fields(batch) for batch in self.batches],
            "ingest_log_waiting": self.log_waiting,
            "quarantine": dict(self.quarantine),
            "tables": [_fields(t) for t in self.tables],
        }


def _fields(record: Any) -> dict[str, Any]:
    """A record's fields (nested records as lists of fields), its times as ISO 8601 text."""
    return {
        k: _iso(v) if isinstance(v, datetime) else list(v) if isinstance(v, tuple) else v
        for k, v in dataclasses.asdict(record).items()
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def last_commit_at(tables: list[TableFigures]) -> datetime | None:
    """The newest data commit of any table: a batch that only quarantined commits to the log and the quarantine."""
    times = [t.last_commit_at for t in tables if t.last_commit_at is not None]
    return max(times) if times else None


def ledger_view(config: JobConfig, now: datetime) -> tuple[Backlog, LeaseState | None, list[Batch]]:
    """The backlog, the table's writer lease and the committed batches whose log rows wait, from one opening of the
    ledger (none is created)."""
    ledger = open_ledger_if_any(config)
    if ledger is None:
        return backlog(config, ledger, now), None, []
    try:
        waiting = [waiting_batch(intent, summary) for intent, summary in ledger.unlogged()]
        return backlog(config, ledger, now), ledger.lease(lease_name(config)), waiting
    finally:
        ledger.close()


def collect(config: JobConfig, *, now: datetime | None = None, last: int = 10) -> Status:
    """Gather the whole status: the backlog, the writer lease, the last `last` batches, quarantine, tables."""
    now = now or datetime.now(UTC)
    found, lease, unlogged = ledger_view(config, now)
    # The newest tells whether the lease's run ingested anything; those still waiting for the log are the newest.
    logged = recent_batches(config, max(last, 1))
    waiting = {b.batch_key for b in unlogged}  # a row written, its ledger close lost to a crash: shown once
    batches = unlogged[::-1] + [b for b in logged if b.batch_key not in waiting]  # the ledger's are oldest first
    views = {name: config.table_uri(name) for name in view_table_names(config)}  # views.run's, besides encounter
    tables = [table_figures(name, uri) for name, uri in {**q.table_uris(config), **views}.items()]
    verdict = judge(found, last_commit_at=last_commit_at(tables), lease=lease, settings=config.status, now=now)
    return Status(
        at=now,
        source=config.source,
        warehouse=config.warehouse,
        settings=config.status,
        source_archive=config.source_archive,
        verdict=verdict,
        backlog=found,
        lease=lease,
        run_ingested=None if lease is None else bool(batches) and batches[0].run_id == lease.owner,
        batches=batches[: max(last, 0)],
        log_waiting=len(unlogged),
        quarantine=quarantine_counts(config),
        tables=tables,
    )


# -- text --------------------------------------------------------------------------------------------------------


def render_text(status: Status) -> str:
    """The status for people: the verdict first, then the backlog, the writer, batches, quarantine and tables."""
    s, b = status.settings, status.backlog
    lines = [
        f"{status.verdict.state}: {status.verdict.reason}",
        "",
        f"status at  {_time(status.at)}",
        f"source     {status.source}",
        f"warehouse  {status.warehouse}",
        f"verdict    BEHIND: a file waits over {_age(s.behind_seconds)} (status.behind_seconds)",
        f"           STALLED: files waited {_age(s.stalled_seconds)} and nothing committed for as long"
        " (status.stalled_seconds), or the writer lease expired while files wait",
        f"writer     {_lease_text(status)}",
        "",
        f"waiting files: {'at least ' if b.truncated else ''}{b.waiting:,}"
        + (f" (oldest {_age(b.oldest_waiting_seconds)} old)" if b.waiting else ""),
    ]
    lines += [f"  {_time(mtime)}  {uri}" for uri, mtime in b.waiting_files]
    if b.waiting > len(b.waiting_files):
        lines.append(f"  ... and {b.waiting - len(b.waiting_files):,} more")
    if b.overwritten:
        lines += [
            "",
            f"overwritten after they were ingested: {b.overwritten:,} (their new content is not in the table;"
            " `bronze-encounter reingest FILE...` takes it)",
            *(f"  {uri}" for uri in b.overwritten_files),
        ]
    if b.ignored:
        lines += [
            "",
            f"ignored for their names: {b.ignored:,} (a name or folder starting with _ or . is never listed; rename"
            " them, or `bronze-encounter reingest FILE...` takes them as they are)",
            *(f"  {uri}" for uri in b.ignored_files),
        ]
    lines += ["", f"listed per trigger: {b.listed:,} files, {b.listed_committed:,} of them already committed"]
    if b.truncated:
        lines.append(f"  the listing stopped at status.max_listed = {s.max_listed:,} files: counts are lower bounds")
    if status.listing_grows:
        lines.append(f"  listing grows: {_listing_advice(status)}")

    lines += ["", "batches, newest first:" if status.batches else "batches: none yet"]
    if status.log_waiting:
        lines.append(
            f"  {status.log_waiting} committed, their ingest-log rows waiting in the ledger (*): the log is written"
            " every ingest_log.every_batches batches or every_seconds, when the job stops, and at its next start"
        )
    if status.batches:
        header: tuple[str, ...] = ("started", "seconds", "lag", "files", "already", "written", "deleted", "rejected")
        header += ("skipped", "stale", "commit", "batch")
        cells: list[tuple[str, ...]] = [
            (
                _time(batch.started_at),
                "-" if batch.seconds is None else f"{batch.seconds:.1f}",
                "-" if batch.lag_seconds is None else _age(batch.lag_seconds),
                str(batch.files),
                str(batch.files_already_committed),
                str(batch.rows_written),
                str(batch.rows_deleted),
                str(batch.rows_rejected),
                str(batch.rows_skipped),
                "-" if batch.rows_stale is None else str(batch.rows_stale),
                batch.commit_instant or "-",
                batch.batch_key + ("" if batch.logged else " *"),
            )
            for batch in status.batches
        ]
        lines += _columns(header, cells)

    total = sum(status.quarantine.values())
    lines += ["", f"quarantine: {total}" + ("" if total else " (none)")]
    lines += [f"  {reason:<24} {n:>8}" for reason, n in status.quarantine.items()]

    lines += ["", "tables:"]
    header = ("table", "rows", "partitions", "files", "size", "commits", "last commit", "last clustering", "pending")
    cells = [
        (
            t.name,
            str(t.rows),
            str(t.partitions),
            str(t.data_files),
            _size(t.bytes),
            str(t.commits),
            _time(t.last_commit_at),
            _time(t.last_clustering_at),
            str(len(t.pending)),
        )
        if t.exists
        else (t.name, "-", "-", "-", "-", "-", "not written yet", "-", "-")
        for t in status.tables
    ]
    lines += _columns(header, cells)
    for t in status.tables:
        lines += [f"  pending on {t.name}: {i.instant} {i.action} {i.state}{_pending_note(i)}" for i in t.pending]
    return "\n".join(lines) + "\n"


def _lease_text(status: Status) -> str:
    """Who writes: the lease's holder and its times, or how the last run ended, and whether it found anything."""
    lease, now = status.lease, status.at
    if lease is None:
        return "no writer lease: no job has run against this ledger"
    known = [
        f"{what} {_time(at)}"
        for what, at in (
            ("taken", lease.acquired_at),
            ("last renewed", lease.renewed_at),
            ("released", lease.released_at),
        )
        if at is not None  # a lease written before these times were kept has none
    ]
    times = f": {', '.join(known)}" if known else ""
    run = f"run {lease.owner} (epoch {lease.epoch})"
    if lease.released:
        nothing = "; it wrote no batch: found nothing new" if status.run_ingested is False else ""
        return f"lease free; the last {run} ended{times}{nothing}"
    if lease.expires_at <= now:
        ago = _age((now - lease.expires_at).total_seconds())
        nothing = "; it wrote no batch" if status.run_ingested is False else ""
        return f"lease of {run} expired {ago} ago, never released (its job stopped or died){times}{nothing}"
    left = _age((lease.expires_at - now).total_seconds())
    nothing = "; no batch in this run yet" if status.run_ingested is False else ""
    return f"{run} holds the lease{times}; it expires in {left} unless renewed{nothing}"


def _listing_advice(status: Status) -> str:
    committed = f"{status.backlog.listed_committed:,} committed files stay in the source and every trigger lists them"
    if status.source_archive:
        return (
            f"{committed}, though source_archive is set ({status.source_archive}): ingested files are not moved"
            ' out (the archive\'s permissions? docs/design.md, "Exactly once")'
        )
    return (
        f"{committed} again (status.listing_warn_files = {status.settings.listing_warn_files:,}); set source_archive"
        ' to move ingested files out of the prefix (docs/design.md, "Exactly once")'
    )


def _pending_note(instant: Instant) -> str:
    if instant.action != "replacecommit":
        return ""
    return (
        " (a clustering plan: upserts into its file groups are refused until it runs; the job's next start runs it"
        " or rolls it back)"
    )


def _columns(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Rows of cells as aligned text lines, first column left-aligned, the rest right-aligned."""
    widths = [max(len(c) for c in column) for column in zip(header, *rows, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        first, *rest = cells
        return "  " + "  ".join([first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))])

    return [line(header), *(line(r) for r in rows)]


def _time(value: datetime | None) -> str:
    return "-" if value is None else f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


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
