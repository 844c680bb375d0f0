"""The embedded ledger: the `Ledger` contract on one SQLite file on local disk."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streaming.ledger.base import (
    BatchIntent,
    Fence,
    LeaseHeld,
    LeaseLost,
    LeaseState,
    LedgerUnavailable,
    utc_iso,
)


class SqliteLedger:
    """The embedded ledger: one SQLite file on local disk, safe for the stream's threads and for restarts."""

    _CHUNK = 500  # well under SQLite's bound-parameter limit

    def __init__(self, path: str | Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.path = Path(path)
        self._clock = clock  # lease expiry only; injected so tests need not sleep
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # WAL + synchronous=FULL: a commit survives a process kill (what the ledger is for).
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS files (
                uri TEXT PRIMARY KEY, batch_key TEXT NOT NULL, committed_at TEXT NOT NULL, version TEXT);
            CREATE TABLE IF NOT EXISTS intents (
                batch_key TEXT PRIMARY KEY, run_id TEXT NOT NULL, batch_id INTEGER NOT NULL,
                files TEXT NOT NULL, started_at TEXT NOT NULL, summary TEXT);
            CREATE TABLE IF NOT EXISTS leases (
                name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at TEXT NOT NULL,
                epoch INTEGER NOT NULL DEFAULT 0, acquired_at TEXT, renewed_at TEXT, released_at TEXT);
            CREATE TABLE IF NOT EXISTS decisions (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            """
        )
        # Ledgers made by earlier releases lack these columns.
        lease_columns = {row[1] for row in self._db.execute("PRAGMA table_info(leases)")}
        if "epoch" not in lease_columns:
            self._db.execute("ALTER TABLE leases ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0")
        for column in ("acquired_at", "renewed_at", "released_at"):
            if column not in lease_columns:
                self._db.execute(f"ALTER TABLE leases ADD COLUMN {column} TEXT")
        if "version" not in {row[1] for row in self._db.execute("PRAGMA table_info(files)")}:
            self._db.execute("ALTER TABLE files ADD COLUMN version TEXT")
        # A committed batch whose ingest-log row is pending keeps its intent, with the row's summary (a new ledger's
        # table has the column from its first statement, so a reader never sees it without).
        if "summary" not in {row[1] for row in self._db.execute("PRAGMA table_info(intents)")}:
            self._db.execute("ALTER TABLE intents ADD COLUMN summary TEXT")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):  # locked / disk I/O: the store is unusable now
                    raise LedgerUnavailable(f"SQLite ledger {self.path.name}: {exc}") from exc
                raise

    def committed(self, uris: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(uris))
        found: set[str] = set()
        with self._tx() as db:
            for i in range(0, len(wanted), self._CHUNK):
                chunk = wanted[i : i + self._CHUNK]
                marks = ",".join("?" * len(chunk))
                found.update(row[0] for row in db.execute(f"SELECT uri FROM files WHERE uri IN ({marks})", chunk))
        return found

    def _check(self, db: sqlite3.Connection, fence: Fence | None) -> None:
        """Inside the write's own transaction: the lease is still the fence's owner at the fence's epoch."""
        if fence is None:
            return
        row = db.execute("SELECT owner, epoch FROM leases WHERE name = ?", (fence.name,)).fetchone()
        if row is None or (row[0], int(row[1])) != (fence.owner, fence.epoch):
            holder = f"{row[0]} at epoch {row[1]}" if row else "nobody"
            raise LeaseLost(f"lease {fence.name!r} is held by {holder}, not {fence.owner} at epoch {fence.epoch}")

    def begin(self, intent: BatchIntent, fence: Fence | None = None) -> None:
        with self._tx() as db:
            self._check(db, fence)
            db.execute(
                "INSERT OR REPLACE INTO intents (batch_key, run_id, batch_id, files, started_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    intent.batch_key,
                    intent.run_id,
                    intent.batch_id,
                    json.dumps(intent.files),
                    utc_iso(intent.started_at),
                ),
            )

    def commit(
        self,
        batch_key: str,
        uris: Sequence[str],
        at: datetime,
        fence: Fence | None = None,
        versions: Mapping[str, str] | None = None,
        summary: str | None = None,
    ) -> None:
        versions = versions or {}
        with self._tx() as db:
            self._check(db, fence)
            # INSERT OR IGNORE: a file committed earlier keeps its first batch key.
            db.executemany(
                "INSERT OR IGNORE INTO files (uri, batch_key, committed_at) VALUES (?, ?, ?)",
                [(uri, batch_key, utc_iso(at)) for uri in uris],
            )
            db.executemany(
                "UPDATE files SET version = ? WHERE uri = ?", [(versions[u], u) for u in uris if u in versions]
            )
            if summary is None:
                db.execute("DELETE FROM intents WHERE batch_key = ?", (batch_key,))
            else:
                db.execute("UPDATE intents SET summary = ? WHERE batch_key = ?", (summary, batch_key))

    def unlogged(self) -> list[tuple[BatchIntent, str]]:
        return [(intent, summary) for intent, summary in self._intents("summary IS NOT NULL") if summary is not None]

    def logged(self, batch_keys: Sequence[str], fence: Fence | None = None) -> None:
        with self._tx() as db:
            self._check(db, fence)
            db.executemany(
                "DELETE FROM intents WHERE batch_key = ? AND summary IS NOT NULL", [(k,) for k in batch_keys]
            )

    def abandon(self, batch_key: str, fence: Fence | None = None) -> None:
        with self._tx() as db:
            self._check(db, fence)
            db.execute("DELETE FROM intents WHERE batch_key = ?", (batch_key,))

    def open_intents(self) -> list[BatchIntent]:
        return [intent for intent, _ in self._intents("summary IS NULL")]

    def _intents(self, where: str) -> list[tuple[BatchIntent, str | None]]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT batch_key, run_id, batch_id, files, started_at, summary FROM intents"
                f" WHERE {where} ORDER BY started_at, batch_key"
            ).fetchall()
        return [
            (BatchIntent(key, run, int(bid), tuple(json.loads(files)), datetime.fromisoformat(started)), summary)
            for key, run, bid, files, started, summary in rows
        ]

    def _select(self, sql: str, keys: Iterable[str]) -> dict[str, str]:
        """Rows (key, value) of `sql` (whose one `{marks}` is an IN list) for `keys`, read in chunks."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, str] = {}
        with self._tx() as db:
            for i in range(0, len(wanted), self._CHUNK):
                chunk = wanted[i : i + self._CHUNK]
                found.update(db.execute(sql.format(marks=",".join("?" * len(chunk))), chunk).fetchall())
        return found

    def versions(self, uris: Iterable[str]) -> dict[str, str]:
        return self._select("SELECT uri, version FROM files WHERE version IS NOT NULL AND uri IN ({marks})", uris)

    def decisions(self, keys: Iterable[str]) -> dict[str, str]:
        return self._select("SELECT key, value FROM decisions WHERE key IN ({marks})", keys)

    def decide(self, decisions: Mapping[str, str], fence: Fence | None = None) -> None:
        with self._tx() as db:
            self._check(db, fence)
            db.executemany("INSERT OR IGNORE INTO decisions VALUES (?, ?)", list(decisions.items()))

    def acquire_lease(self, name: str, owner: str, ttl: timedelta) -> int:
        now = self._clock()
        with self._tx() as db:
            row = db.execute(
                "SELECT owner, expires_at, epoch, acquired_at FROM leases WHERE name = ?", (name,)
            ).fetchone()
            if row and row[0] != owner and datetime.fromisoformat(row[1]) > now:
                raise LeaseHeld(f"lease {name!r} is held by {row[0]} until {row[1]}")
            epoch = 1 if row is None else int(row[2]) + (row[0] != owner)
            # A renewal keeps when its owner took the lease; a takeover starts it again.
            acquired = row[3] if row and row[0] == owner and row[3] else utc_iso(now)
            db.execute(
                "INSERT OR REPLACE INTO leases (name, owner, expires_at, epoch, acquired_at, renewed_at, released_at)"
                " VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (name, owner, utc_iso(now + ttl), epoch, acquired, utc_iso(now)),
            )
        return epoch

    def release_lease(self, name: str, owner: str) -> None:
        # Expired, not deleted: the row keeps the epoch, so the next holder's is higher still.
        with self._tx() as db:
            db.execute(
                "UPDATE leases SET expires_at = ?, released_at = ? WHERE name = ? AND owner = ?",
                (utc_iso(datetime.fromtimestamp(0, UTC)), utc_iso(self._clock()), name, owner),
            )

    def lease(self, name: str) -> LeaseState | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT owner, epoch, expires_at, acquired_at, renewed_at, released_at FROM leases WHERE name = ?",
                (name,),
            ).fetchone()
        if row is None:
            return None
        owner, epoch, expires, acquired, renewed, released = row
        return LeaseState(
            name, owner, int(epoch), datetime.fromisoformat(expires), _time(acquired), _time(renewed), _time(released)
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
