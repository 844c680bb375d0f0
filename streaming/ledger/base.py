"""The ledger contract: the `Ledger` protocol every store implements, its records and its errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from streaming.config import ConfigError


@dataclass(frozen=True)
class BatchIntent:
    """A micro-batch about to write `files`; `batch_key` is stable across replays of the same batch."""

    batch_key: str
    run_id: str
    batch_id: int
    files: tuple[str, ...]
    started_at: datetime


class LedgerUnavailable(RuntimeError):
    """The ledger store did not answer (after the client's own retries); the batch must not go on."""


class LedgerMisconfigured(ConfigError):
    """The ledger store refuses in a way retrying cannot fix (missing table, no permission, no region)."""


class LeaseHeld(RuntimeError):
    """Another live job instance holds the writer lease of this table."""


class LeaseLost(LeaseHeld):
    """This instance no longer holds the lease it wrote under: another took it over, or it may have expired."""


@dataclass(frozen=True)
class Fence:
    """The lease a write is made under: a ledger change carrying it succeeds only while `owner` still holds
    `name` at `epoch`. The epoch only grows (every takeover adds one), so a stalled writer's token goes stale."""

    name: str
    owner: str
    epoch: int


@dataclass(frozen=True)
class LeaseState:
    """A writer lease as the store holds it: who took it, when it was last renewed, when it runs out."""

    name: str
    owner: str  # the holder's run id
    epoch: int
    expires_at: datetime  # 1970-01-01 after a release
    acquired_at: datetime | None  # when `owner` took it; None in a lease written before these times were kept
    renewed_at: datetime | None  # the holder's last renewal (every third of the TTL while it runs)
    released_at: datetime | None  # when `owner` gave it up (its run ended); None while held or if it died

    @property
    def released(self) -> bool:
        return self.released_at is not None or self.expires_at.timestamp() <= 0

    def live(self, now: datetime) -> bool:
        """Whether the holder may still write: not released and not past its expiry."""
        return not self.released and self.expires_at > now


class Ledger(Protocol):
    """What the pipeline needs from a ledger store."""

    def committed(self, uris: Iterable[str]) -> set[str]:
        """Return the subset of `uris` already committed."""
        ...

    def begin(self, intent: BatchIntent, fence: Fence | None = None) -> None:
        """Record an intent; recording the same batch key again replaces it. With a `fence`, only while it holds
        (else LeaseLost, nothing written)."""
        ...

    def commit(
        self,
        batch_key: str,
        uris: Sequence[str],
        at: datetime,
        fence: Fence | None = None,
        versions: Mapping[str, str] | None = None,
        summary: str | None = None,
    ) -> None:
        """Mark `uris` committed by `batch_key` and close its intent; idempotent; fenced like `begin`. A file
        keeps the batch that first committed it; `versions` (size and modification time) are recorded each time,
        so a file taken again (`reingest`) shows which version the table holds. With a `summary` (what the batch's
        ingest-log row says beyond its intent, as JSON) the intent stays, committed, until `logged` closes it."""
        ...

    def unlogged(self) -> list[tuple[BatchIntent, str]]:
        """Committed batches whose ingest-log row is not written yet: each intent and its summary, oldest first."""
        ...

    def logged(self, batch_keys: Sequence[str], fence: Fence | None = None) -> None:
        """Close committed batches whose ingest-log rows are written; fenced like `begin`."""
        ...

    def abandon(self, batch_key: str, fence: Fence | None = None) -> None:
        """Close an intent whose batch wrote nothing, so its files count as new again; fenced like `begin`."""
        ...

    def open_intents(self) -> list[BatchIntent]:
        """Intents begun and neither committed nor abandoned, oldest first."""
        ...

    def versions(self, uris: Iterable[str]) -> dict[str, str]:
        """The version (size@modification time) last committed for each of `uris` that has one."""
        ...

    def decisions(self, keys: Iterable[str]) -> dict[str, str]:
        """What was decided for each of `keys` that has a decision (see `decide`)."""
        ...

    def decide(self, decisions: Mapping[str, str], fence: Fence | None = None) -> None:
        """Record decisions a re-read must repeat (a timeless DELETE's ordering); the first one recorded for a key
        stays; fenced like `begin`."""
        ...

    def acquire_lease(self, name: str, owner: str, ttl: timedelta) -> int:
        """Take or renew the lease `name` for `owner` and return its epoch: unchanged on a renewal, one more on
        a takeover. Raise LeaseHeld if another owner's lease is live."""
        ...

    def release_lease(self, name: str, owner: str) -> None:
        """Give the lease up if `owner` holds it."""
        ...

    def lease(self, name: str) -> LeaseState | None:
        """The lease `name` as the store holds it, None if it was never taken; reads only (`status`)."""
        ...

    def close(self) -> None: ...


def utc_iso(value: datetime) -> str:
    """How both ledger stores write a time: ISO 8601 in UTC."""
    return value.astimezone(UTC).isoformat()
