"""A file's identity in the ledger: its canonical URI, scoped to the table it feeds.

Spark names a file the way the source prefix spells it, so one S3 object reached as `s3://` and as `s3a://` would
be two files, and two tables (or environments) sharing one ledger table would skip each other's files. The ledger
therefore keys a committed file by `<table>|<canonical uri>` (`s3a://` and `s3n://` become `s3://`; a local path
becomes `file:/abs/path`), and keys a batch intent by `<table>|<batch key>`, so a job only ever sees and recovers
its own table's intents. Everything outside the ledger keeps the URI as Spark listed it (`sourcename`, the ingest
log), so nothing else changes.

Ledgers written before this kept the raw URI as the key. They keep working: a raw-URI record still counts as
committed (they were written when one ledger served one table), and intents without a scope are recovered by
every table until they close, as before. New records are always scoped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TypeVar

from streaming.config import canonical_uri
from streaming.ledger.base import BatchIntent, Fence, LeaseState, Ledger

__all__ = ["SEPARATOR", "ScopedLedger", "canonical_uri"]

T = TypeVar("T")
SEPARATOR = "|"  # cannot start a URI, so a scoped key never looks like a raw (legacy) one


class ScopedLedger:
    """A `Ledger` whose file and intent keys are scoped to one table (see the module docstring)."""

    def __init__(self, inner: Ledger, table_uri: str) -> None:
        self.inner = inner
        self.scope = canonical_uri(table_uri).rstrip("/")
        self._legacy: set[str] = set()  # unscoped intents open_intents returned: closed under their own key

    def file_key(self, uri: str) -> str:
        return f"{self.scope}{SEPARATOR}{canonical_uri(uri)}"

    def _batch(self, key: str) -> str:
        """A batch key (or a decision key) of this table's."""
        return f"{self.scope}{SEPARATOR}{key}"

    def committed(self, uris: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(uris))
        keys = {uri: self.file_key(uri) for uri in wanted}
        found = self.inner.committed([*keys.values(), *wanted])  # scoped keys, and raw ones of older ledgers
        return {uri for uri in wanted if keys[uri] in found or uri in found}

    def begin(self, intent: BatchIntent, fence: Fence | None = None) -> None:
        self.inner.begin(replace(intent, batch_key=self._batch(intent.batch_key)), fence)

    def commit(
        self,
        batch_key: str,
        uris: Sequence[str],
        at: datetime,
        fence: Fence | None = None,
        versions: Mapping[str, str] | None = None,
        summary: str | None = None,
    ) -> None:
        keyed = {self.file_key(u): v for u, v in (versions or {}).items()}
        # An unscoped (older) intent is committed under its own key: that closes it, or keeps it for its log row.
        key = batch_key if batch_key in self._legacy else self._batch(batch_key)
        self.inner.commit(key, [self.file_key(u) for u in uris], at, fence, keyed, summary)

    def unlogged(self) -> list[tuple[BatchIntent, str]]:
        return [(intent, summary) for intent, summary in self._mine(self.inner.unlogged())]

    def logged(self, batch_keys: Sequence[str], fence: Fence | None = None) -> None:
        self.inner.logged([k if k in self._legacy else self._batch(k) for k in batch_keys], fence)

    def abandon(self, batch_key: str, fence: Fence | None = None) -> None:
        self.inner.abandon(self._batch(batch_key), fence)
        if batch_key in self._legacy:
            self.inner.abandon(batch_key, fence)

    def open_intents(self) -> list[BatchIntent]:
        return [intent for intent, _ in self._mine((intent, None) for intent in self.inner.open_intents())]

    def _mine(self, found: Iterable[tuple[BatchIntent, T]]) -> list[tuple[BatchIntent, T]]:
        """This table's intents, unscoped; unscoped ones written before scoping too (remembered as legacy)."""
        mine, prefix = [], self.scope + SEPARATOR
        for intent, extra in found:
            if intent.batch_key.startswith(prefix):
                mine.append((replace(intent, batch_key=intent.batch_key[len(prefix) :]), extra))
            elif SEPARATOR not in intent.batch_key:  # written before scoping
                self._legacy.add(intent.batch_key)
                mine.append((intent, extra))
        return mine

    def versions(self, uris: Iterable[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(uris))
        keys = {uri: self.file_key(uri) for uri in wanted}
        found = self.inner.versions([*keys.values(), *wanted])
        return {uri: found[k] for uri in wanted for k in (uri, keys[uri]) if k in found}  # the scoped key wins

    def decisions(self, keys: Iterable[str]) -> dict[str, str]:
        scoped = {self._batch(k): k for k in keys}
        return {scoped[k]: v for k, v in self.inner.decisions(scoped).items()}

    def decide(self, decisions: Mapping[str, str], fence: Fence | None = None) -> None:
        self.inner.decide({self._batch(k): v for k, v in decisions.items()}, fence)

    def acquire_lease(self, name: str, owner: str, ttl: timedelta) -> int:
        return self.inner.acquire_lease(name, owner, ttl)

    def release_lease(self, name: str, owner: str) -> None:
        self.inner.release_lease(name, owner)

    def lease(self, name: str) -> LeaseState | None:
        return self.inner.lease(name)  # a lease is named after its table already

    def close(self) -> None:
        self.inner.close()
