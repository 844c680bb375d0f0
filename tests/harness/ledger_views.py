"""Read-only views of the job's ledger (SQLite or DynamoDB), for waiting on the live job and checking what it recorded.

Keys are `<table>|<uri>` and `<table>|<batch key>` (streaming/ledger/scoped.py); the views answer with the unscoped
URIs and batch keys, since each test feeds one table.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from streaming.ledger.scoped import SEPARATOR

from .processes import JobProcess, wait_until


class LedgerView(Protocol):
    def committed(self, uris: Iterable[str]) -> set[str]: ...

    def all_committed(self) -> Counter[str] | None: ...

    def open_intents(self) -> set[str]: ...


def _unscoped(key: str) -> str:
    return key.partition(SEPARATOR)[2] or key


class SqliteLedgerView:
    """The job's SQLite ledger, opened read-only for every look (the job may be writing it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            return []
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        finally:
            db.close()

    def all_committed(self) -> Counter[str]:
        return Counter(_unscoped(uri) for (uri,) in self._rows("SELECT uri FROM files"))

    def committed(self, uris: Iterable[str]) -> set[str]:
        return set(self.all_committed()) & set(uris)

    def open_intents(self) -> set[str]:
        return set(self.intents())

    def intents(self) -> dict[str, frozenset[str]]:
        """Open intents: batch key -> the files it announced (as Spark listed them: intents keep them unscoped).
        Not those of committed batches whose ingest-log row waits (they carry its summary)."""
        rows = self._rows("SELECT batch_key, files FROM intents WHERE summary IS NULL")
        return {_unscoped(key): frozenset(json.loads(files)) for key, files in rows}

    def unlogged(self) -> set[str]:
        """Committed batches whose ingest-log row is not written yet."""
        return {_unscoped(key) for (key,) in self._rows("SELECT batch_key FROM intents WHERE summary IS NOT NULL")}

    def batches(self) -> dict[str, tuple[str, frozenset[str]]]:
        """Committed batches: batch key -> (when it committed, the files it was the first to commit)."""
        files: dict[str, set[str]] = defaultdict(set)
        at: dict[str, str] = {}
        for uri, key, committed_at in self._rows("SELECT uri, batch_key, committed_at FROM files"):
            files[_unscoped(key)].add(_unscoped(uri))
            at[_unscoped(key)] = max(at.get(_unscoped(key), ""), committed_at)
        return {key: (at[key], frozenset(uris)) for key, uris in files.items()}

    def batch_of(self, uris: Iterable[str]) -> dict[str, str]:
        """file -> the batch key that first committed it (files not committed are left out)."""
        wanted = set(uris)
        found = self._rows("SELECT uri, batch_key FROM files")
        return {_unscoped(uri): _unscoped(key) for uri, key in found if _unscoped(uri) in wanted}

    def lease_owner(self) -> str | None:
        """The run id that holds (or last held) the writer lease: a killed run never released it."""
        rows = self._rows("SELECT owner FROM leases")
        assert len(rows) <= 1, f"{len(rows)} writer leases in a ledger the test gave one table"
        return rows[0][0] if rows else None


class DynamoLedgerView:
    """The job's DynamoDB ledger, its items read with boto3 straight from moto: neither through the product's ledger
    code nor through the proxy the jobs use. Item keys as streaming/ledger/dynamodb.py documents them:
    `file#<table>|<uri>` per committed file, `intent#<table>|<batch key>` with `intent_open` `open` per open
    intent."""

    def __init__(self, table: str, warehouse: Path) -> None:
        import boto3

        self.table = table
        env = os.environ
        region = env.get("AWS_REGION") or env["AWS_DEFAULT_REGION"]
        self.client = boto3.session.Session().client(
            "dynamodb", region_name=region, endpoint_url=env["AWS_ENDPOINT_URL"]
        )

    def _keys(self, kind: str, attribute: str | None = None, value: str | None = None) -> list[str]:
        """Unscoped keys of the items of one kind (`file#`, `intent#`), optionally only those with `attribute`
        (equal to `value`, if given)."""
        pages = self.client.get_paginator("scan").paginate(TableName=self.table, ConsistentRead=True)
        keys = []
        for page in pages:
            for item in page["Items"]:
                pk = item["pk"]["S"]
                found = attribute is None or (attribute in item and value in (None, item[attribute].get("S")))
                if pk.startswith(kind) and found:
                    keys.append(_unscoped(pk[len(kind) :]))
        return keys

    def all_committed(self) -> Counter[str]:
        """Every committed file as often as an item records it (a file under two keys counts twice)."""
        return Counter(self._keys("file#"))

    def committed(self, uris: Iterable[str]) -> set[str]:
        return set(self.all_committed()) & set(uris)

    def open_intents(self) -> set[str]:
        return set(self._keys("intent#", "intent_open", "open"))  # `log`: committed, its log row waiting


def wait_all_committed(what: str, proc: JobProcess, ledger: LedgerView, files: set[str], timeout: float) -> None:
    """Wait until the live job has committed every file in the ledger and left no intent open."""
    wait_until(
        what,
        lambda: proc.alive() and ledger.committed(files) == files and not ledger.open_intents(),
        timeout,
        every=0.5,
        detail=proc.tail,
    )
