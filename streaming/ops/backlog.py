"""The backlog: one listing of the landing source against the ledger, for `status` and the job's metrics timer.

What the stream still has to take (waiting), what it took and then saw overwritten in place, what it never lists
for its name (ignored), and what it lists again at every trigger (listed, listed_committed). The listing is paged
(S3 `list_objects_v2`, a local walk) and stops at `status.max_listed` files, so memory holds one page and a few
example names, whatever the prefix holds. No JVM, no table read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streaming.adapters.storage import LANDED_AT, local_path, split_s3_uri
from streaming.config import JobConfig, is_remote, is_s3
from streaming.ledger import Ledger, open_ledger

EXAMPLES = 10  # file names kept (and shown) per kind: waiting, overwritten, ignored
_PAGE = 1000  # files looked up in the ledger at a time: S3's page size, and a local walk's
_HEADS = 100  # S3 objects whose metadata one backlog reads at most (see `_still_landed`)


@dataclass(frozen=True)
class Backlog:
    """What one listing of the source found, against the ledger; every count is a lower bound when `truncated`."""

    at: datetime
    listed: int  # files the stream's source lists at every trigger (ignored names left out)
    listed_committed: int  # of those, already committed: listed again and again until archived (`source_archive`)
    waiting: int  # listed, not committed: the stream still has to take them
    oldest_waiting_seconds: float | None  # age of the oldest waiting file (by modification time); None: none waits
    overwritten: int  # committed, but the listed size or modification time is not the version the ledger recorded
    ignored: int  # never listed by the stream: a name (or folder) starting with `_` or `.` (see `hidden`)
    truncated: bool = False  # the listing stopped at `status.max_listed` files
    waiting_files: tuple[tuple[str, datetime], ...] = ()  # the oldest waiting (URI, modified), oldest first
    overwritten_files: tuple[str, ...] = ()  # examples, in listing order
    ignored_files: tuple[str, ...] = ()  # examples, in listing order

    @property
    def count(self) -> int:
        """Files waiting (what `metrics.Waiting` asks for)."""
        return self.waiting

    @property
    def oldest_age_seconds(self) -> float | None:
        """Age of the oldest waiting file (what `metrics.Waiting` asks for)."""
        return self.oldest_waiting_seconds


@dataclass(frozen=True)
class Waiting:
    """Landed files the ledger has not committed, oldest first (at most EXAMPLES of them); ages from `now`."""

    count: int
    oldest_age_seconds: float | None
    files: list[tuple[str, datetime]] = field(default_factory=list)


@dataclass(frozen=True)
class _Entry:
    """One listed object: its URI as the ledger spells it, size, modification time, and whether Spark skips it."""

    uri: str
    size: int
    modified: datetime
    ignored: bool


def hidden(name: str) -> bool:
    """Whether Spark's file source skips a file or folder of this name (its InMemoryFileIndex rule)."""
    excluded = (name.startswith("_") and "=" not in name) or name.startswith(".") or name.endswith("._COPYING_")
    return excluded and not name.startswith(("_common_metadata", "_metadata"))


def backlog(
    config: JobConfig, ledger: Ledger | None = None, now: datetime | None = None, *, examples: int = EXAMPLES
) -> Backlog:
    """List `config.source` once (at most `status.max_listed` files) and compare every file with the ledger.

    `ledger`: an open ledger to use (the job's); without one, the configured ledger is opened and closed again (a
    SQLite ledger that does not exist yet is not created: nothing is committed then).
    """
    now = now or datetime.now(UTC)
    store = ledger if ledger is not None else open_ledger_if_any(config)
    try:
        return _compare(config, store, now, examples)
    finally:
        if ledger is None and store is not None:
            store.close()


def _compare(config: JobConfig, ledger: Ledger | None, now: datetime, examples: int) -> Backlog:
    limit = config.status.max_listed
    tally = _Tally(examples)
    seen = 0
    truncated = False
    for page in _pages(config.source):
        if seen + len(page) > limit:
            page, truncated = page[: limit - seen], True
        seen += len(page)
        tally.add_page(page, ledger)
        if truncated:
            break
    return tally.backlog(now, truncated)


@dataclass
class _Tally:
    """The counts and examples of one listing so far, page by page (see `Backlog`)."""

    examples: int
    listed: int = 0
    listed_committed: int = 0
    waiting: int = 0
    overwritten: int = 0
    ignored: int = 0
    heads: int = 0  # S3 objects whose metadata was read (at most _HEADS)
    oldest: list[tuple[datetime, str]] = field(
        default_factory=list
    )  # a few more than `examples`, cut back now and then
    oldest_at: datetime | None = None
    overwritten_files: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)

    def add_page(self, page: list[_Entry], ledger: Ledger | None) -> None:
        for entry in page:
            if entry.ignored:
                self.ignored += 1
                if len(self.ignored_files) < self.examples:
                    self.ignored_files.append(entry.uri)
        files = [e for e in page if not e.ignored]
        versions, committed = _lookup(ledger, [e.uri for e in files])
        self.listed += len(files)
        for entry in files:
            if entry.uri not in committed:
                self._add_waiting(entry)
            else:
                self.listed_committed += 1
                self._check_version(entry, versions.get(entry.uri))

    def _add_waiting(self, entry: _Entry) -> None:
        self.waiting += 1
        self.oldest_at = entry.modified if self.oldest_at is None else min(self.oldest_at, entry.modified)
        self.oldest.append((entry.modified, entry.uri))
        if len(self.oldest) > 4 * max(self.examples, 1):
            self.oldest = sorted(self.oldest)[: self.examples]

    def _check_version(self, entry: _Entry, recorded: str | None) -> None:
        """Count a committed file as overwritten when its listed version is not the `recorded` one."""
        if recorded is None or not _differs(recorded, entry):
            return
        if is_s3(entry.uri) and entry.size == _size(recorded) and self.heads < _HEADS:
            self.heads += 1  # same size, another time: maybe a file moved back from the archive, not a new version
            if _still_landed(entry.uri, recorded):
                return
        self.overwritten += 1
        if len(self.overwritten_files) < self.examples:
            self.overwritten_files.append(entry.uri)

    def backlog(self, now: datetime, truncated: bool) -> Backlog:
        return Backlog(
            at=now,
            listed=self.listed,
            listed_committed=self.listed_committed,
            waiting=self.waiting,
            oldest_waiting_seconds=None if self.oldest_at is None else (now - self.oldest_at).total_seconds(),
            overwritten=self.overwritten,
            ignored=self.ignored,
            truncated=truncated,
            waiting_files=tuple((uri, modified) for modified, uri in sorted(self.oldest)[: self.examples]),
            overwritten_files=tuple(self.overwritten_files),
            ignored_files=tuple(self.ignored_files),
        )


def _lookup(ledger: Ledger | None, uris: list[str]) -> tuple[dict[str, str], set[str]]:
    """(recorded versions, committed URIs) of `uris`: versions first, since most committed files have one."""
    if ledger is None or not uris:
        return {}, set()
    versions = ledger.versions(uris)
    rest = [u for u in uris if u not in versions]  # new files, and files committed without a version (recovery)
    return versions, set(versions) | (ledger.committed(rest) if rest else set())


def _differs(version: str, entry: _Entry) -> bool:
    """Whether a listed file is not the version the ledger recorded (`size@time`, pipeline/deps.py file_version).

    Times compare to the millisecond: what the stream's listing (Hadoop's FileStatus) keeps. A version that does not
    parse says nothing.
    """
    size, _, at = version.partition("@")
    try:
        recorded = datetime.fromisoformat(at)
        return int(size) != entry.size or _millis(recorded) != _millis(entry.modified)
    except ValueError:
        return False


def _size(version: str) -> int | None:
    text = version.partition("@")[0]
    return int(text) if text.isdigit() else None


def _millis(at: datetime) -> int:
    return (at.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _still_landed(uri: str, version: str) -> bool:
    """Whether an S3 object carries the landing time the ledger recorded (storage.LANDED_AT): `reingest` moved it
    back from the archive, so its LastModified is the copy's, not a new version's."""
    from botocore.exceptions import ClientError

    from streaming.adapters import aws

    bucket, key = split_s3_uri(uri)
    try:
        landed = aws.client("s3").head_object(Bucket=bucket, Key=key).get("Metadata", {}).get(LANDED_AT)
        recorded = datetime.fromisoformat(version.partition("@")[2])
        return landed is not None and _millis(datetime.fromisoformat(landed)) == _millis(recorded)
    except (ClientError, ValueError):  # gone since the listing, or unreadable metadata: counted as overwritten
        return False


def _pages(source: str) -> Iterator[list[_Entry]]:
    """Every object under `source`, a page at a time, as the stream names them; nothing is held past its page."""
    if is_s3(source):
        yield from _s3_pages(source)
    elif is_remote(source):
        raise ValueError(f"source {source!r}: only local folders and s3:// or s3a:// prefixes can be listed")
    else:
        yield from _local_pages(local_path(source))


def _local_pages(root: str) -> Iterator[list[_Entry]]:
    """Walk like Hadoop's local file system under Spark's recursive lookup, hidden folders too (to count them)."""
    if not os.path.isdir(root):
        return  # the job creates the folder at start; nothing has landed yet
    page: list[_Entry] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()  # a stable order: the same examples every time
        inside_hidden = any(hidden(part) for part in Path(os.path.relpath(folder, root)).parts if part != ".")
        for name in sorted(files):
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)
            except FileNotFoundError:  # moved away between the listing and the stat
                continue
            # Hadoop's Path prints a local file as `file:/abs/path`, not percent-encoded (see storage.local_path).
            modified = datetime.fromtimestamp(stat.st_mtime, UTC)
            page.append(_Entry(f"file:{os.path.abspath(path)}", stat.st_size, modified, inside_hidden or hidden(name)))
            if len(page) == _PAGE:
                yield page
                page = []
    if page:
        yield page


def _s3_pages(source: str) -> Iterator[list[_Entry]]:
    """The objects under an S3 prefix, a `list_objects_v2` page at a time; URIs keep the source's scheme."""
    from streaming.adapters import aws

    scheme = source.split("://", 1)[0]
    bucket, prefix = split_s3_uri(source)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    paginator = aws.client("s3").get_paginator("list_objects_v2")
    for response in paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": _PAGE}):
        page = [
            _Entry(
                f"{scheme}://{bucket}/{obj['Key']}",
                int(obj.get("Size", 0)),
                obj["LastModified"].astimezone(UTC),
                any(hidden(part) for part in obj["Key"][len(prefix) :].split("/")),
            )
            for obj in response.get("Contents", [])
            if not obj["Key"].endswith("/")  # a folder marker, not a file
        ]
        if page:
            yield page


def landed_files(source: str) -> list[tuple[str, datetime]]:
    """Every file under `source` the stream lists: (URI as the ledger spells it, modification time). Unbounded:
    for tests and small folders; `backlog` is what counts a large prefix."""
    return [(e.uri, e.modified) for page in _pages(source) for e in page if not e.ignored]


def waiting_files(config: JobConfig, *, now: datetime | None = None) -> Waiting:
    """Files under `config.source` that the ledger has not committed: the count, the oldest's age, the oldest few."""
    found = backlog(config, now=now)
    return Waiting(found.waiting, found.oldest_waiting_seconds, list(found.waiting_files))


def open_ledger_if_any(config: JobConfig) -> Ledger | None:
    """The configured ledger, or None for a SQLite ledger not created yet (opening it would create it)."""
    if config.ledger.backend == "sqlite" and not Path(config.ledger_path).exists():
        return None
    return open_ledger(config)
