"""The DynamoDB ledger: the `Ledger` contract of `ledger.py` on one DynamoDB table, for jobs without local disk.

One table, string partition key `pk`, three kinds of item:

- `file#<uri>`: a committed file, with the `batch_key` that first committed it and `committed_at`;
- `intent#<batch_key>`: a batch intent (`run_id`, `batch_id`, `files`, `started_at`) plus the sparse attribute
  `intent_open`, the hash key of the `open_intents` GSI, so listing intents is a Query, not a Scan: `open` while
  the batch runs, `log` once it is committed with its ingest-log row still to write (its `summary` kept beside);
- `lease#<name>`: a writer lease (`owner`, `expires_at` as ISO text, `expires_epoch` for the condition, and for
  `status` `acquired_at`, `renewed_at`, `released_at`).

Endpoints and credentials come only from the environment (see `aws.py`), so the same code talks to AWS or moto.
Errors never carry item contents: only the operation, the table and the AWS error code; which of them a retry
can fix is decided in `ledger_dynamodb_retry.py`. The table itself is defined once, in deploy/template.json.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from streaming.adapters import aws
from streaming.ledger.base import BatchIntent, Fence, LeaseHeld, LeaseLost, LeaseState, LedgerUnavailable, utc_iso
from streaming.ledger.dynamodb_errors import cancellation_error, error_code, guard, lease_config, ledger_error

INDEX = "open_intents"
_OPEN = "open"  # the sparse GSI key of an open intent: every open intent sits in one GSI partition
_LOG = "log"  # ... and of a committed batch whose ingest-log row is pending: another one
_FILE, _INTENT, _LEASE, _DECISION = "file#", "intent#", "lease#", "decision#"
_PART = "intentpart#"  # further files of an intent too large for one item: intentpart#<batch key>#<n>
# DynamoDB caps an item at 400 KB; an intent's file list is cut into items of at most this many UTF-8 bytes
# (1,000 files of 300-character keys would otherwise not fit).
_PART_BYTES = 300_000
_BATCH_GET_MAX = 100  # BatchGetItem's per-request key limit
_TRANSACTION_MAX = 100  # TransactWriteItems' per-request action limit
_COMMIT_WORKERS = 8
_UNPROCESSED_ROUNDS = 6  # BatchGetItem retries of throttled keys before the store counts as unavailable
_BACKOFF_BASE = 0.025
_BACKOFF_CAP = 0.5

Item = dict[str, dict[str, Any]]


class DynamoDbLedger:
    """The ledger on the DynamoDB table deploy/template.json defines (`LedgerTable`); safe to share between threads."""

    def __init__(
        self,
        table: str,
        region: str = "",
        client: Any | None = None,
        *,
        lease_ttl: timedelta = timedelta(seconds=60),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.table = table
        self._clock = clock  # lease expiry only; injected so tests need not sleep
        # `client` lets callers (tests) pass one with other retry settings; endpoints still come from the environment.
        try:
            self._client = client if client is not None else aws.client("dynamodb", region)
            # Lease calls get their own client whose timeouts and retries add up to less than a third of the TTL:
            # a renewal hung in retries must give up while the lease is still valid, not after it expired.
            self._lease_client = (
                client if client is not None else aws.client("dynamodb", region, lease_config(lease_ttl))
            )
        except BotoCoreError as exc:  # no region: boto3 refuses to build the client
            raise ledger_error("client setup", table, exc) from exc

    def _guard(self, operation: str) -> AbstractContextManager[None]:
        return guard(operation, self.table)

    def _batch_get(self, keys: list[str], projection: str | None) -> list[Item]:
        """Strongly consistent BatchGetItem of up to 100 distinct keys, re-asking for throttled (unprocessed) keys."""
        request: dict[str, Any] = {"Keys": [{"pk": {"S": k}} for k in keys], "ConsistentRead": True}
        if projection:
            request["ProjectionExpression"] = projection
            request["ExpressionAttributeNames"] = {"#pk": "pk"}
        items: list[Item] = []
        rounds = 0
        while True:
            with self._guard("BatchGetItem"):
                response = self._client.batch_get_item(RequestItems={self.table: request})
            items.extend(response.get("Responses", {}).get(self.table, []))
            pending = response.get("UnprocessedKeys", {}).get(self.table)
            if not pending or not pending.get("Keys"):
                return items
            rounds += 1
            if rounds > _UNPROCESSED_ROUNDS:
                raise LedgerUnavailable(
                    f"DynamoDB ledger {self.table}: BatchGetItem left {len(pending['Keys'])} keys unprocessed"
                )
            time.sleep(min(_BACKOFF_CAP, _BACKOFF_BASE * 2**rounds))
            request = pending  # carries the same projection and consistency settings

    def committed(self, uris: Iterable[str]) -> set[str]:
        # BatchGetItem rejects duplicate keys in one request, so de-duplicate first (keeping order for chunking).
        keys = [_FILE + uri for uri in dict.fromkeys(uris)]
        found: set[str] = set()
        for i in range(0, len(keys), _BATCH_GET_MAX):
            for item in self._batch_get(keys[i : i + _BATCH_GET_MAX], "#pk"):
                found.add(item["pk"]["S"][len(_FILE) :])
        return found

    def _attribute(self, prefix: str, keys: Iterable[str], attribute: str) -> dict[str, str]:
        """`attribute` of the items `prefix + key` that have it, by key (BatchGetItem, 100 keys a request)."""
        wanted = [prefix + k for k in dict.fromkeys(keys)]
        found: dict[str, str] = {}
        for i in range(0, len(wanted), _BATCH_GET_MAX):
            for item in self._batch_get(wanted[i : i + _BATCH_GET_MAX], f"#pk, {attribute}"):
                if attribute in item:
                    found[item["pk"]["S"][len(prefix) :]] = item[attribute]["S"]
        return found

    def versions(self, uris: Iterable[str]) -> dict[str, str]:
        return self._attribute(_FILE, uris, "version")

    def decisions(self, keys: Iterable[str]) -> dict[str, str]:
        return self._attribute(_DECISION, keys, "decided")

    def decide(self, decisions: Mapping[str, str], fence: Fence | None = None) -> None:
        # if_not_exists: the first decision for a key stays, so a retried batch cannot change it.
        updates = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": _DECISION + key}},
                    "UpdateExpression": "SET decided = if_not_exists(decided, :v)",
                    "ExpressionAttributeValues": {":v": {"S": value}},
                }
            }
            for key, value in decisions.items()
        ]
        size = _TRANSACTION_MAX - 1 if fence else 1  # one transaction holds the lease check and 99 updates
        for i in range(0, len(updates), size):
            self._write("UpdateItem decisions", fence, updates[i : i + size])

    def begin(self, intent: BatchIntent, fence: Fence | None = None) -> None:
        parts = _cut(intent.files)
        # Parts first, the intent item last: an intent that is visible always has every part it names.
        for n, files in enumerate(parts[1:], start=1):
            with self._guard("PutItem intent part"):
                self._client.put_item(
                    TableName=self.table,
                    Item={"pk": {"S": f"{_PART}{intent.batch_key}#{n}"}, "files": {"L": [{"S": f} for f in files]}},
                )
        item: Item = {
            "pk": {"S": _INTENT + intent.batch_key},
            "run_id": {"S": intent.run_id},
            "batch_id": {"N": str(intent.batch_id)},
            "files": {"L": [{"S": f} for f in parts[0]]},
            "parts": {"N": str(len(parts))},
            "started_at": {"S": utc_iso(intent.started_at)},
            "intent_open": {"S": _OPEN},
        }
        self._write("PutItem intent", fence, [{"Put": {"TableName": self.table, "Item": item}}])

    def _write(self, operation: str, fence: Fence | None, actions: list[dict[str, Any]]) -> None:
        """Run `actions` (TransactWriteItems entries); with a fence, as one transaction that also checks the lease."""
        if fence is None:
            for action in actions:
                kind, params = next(iter(action.items()))
                call = {"Put": self._client.put_item, "Update": self._client.update_item}.get(kind)
                with self._guard(operation):
                    (call or self._client.delete_item)(**params)
            return
        check = {
            "ConditionCheck": {
                "TableName": self.table,
                "Key": {"pk": {"S": _LEASE + fence.name}},
                "ConditionExpression": "#o = :owner AND epoch = :epoch",
                "ExpressionAttributeNames": {"#o": "owner"},
                "ExpressionAttributeValues": {":owner": {"S": fence.owner}, ":epoch": {"N": str(fence.epoch)}},
            }
        }
        try:
            self._client.transact_write_items(TransactItems=[check, *actions])
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise ledger_error(operation, self.table, exc) from exc
            lease = f"lease {fence.name!r} is no longer held by {fence.owner} at epoch {fence.epoch}"
            error = cancellation_error(operation, self.table, exc, lease=lease)
            raise error from (None if isinstance(error, LeaseLost) else exc)
        except BotoCoreError as exc:
            raise ledger_error(operation, self.table, exc) from exc

    def _mark(
        self, uris: Sequence[str], batch_key: str, at: str, fence: Fence | None, versions: Mapping[str, str]
    ) -> None:
        # if_not_exists: idempotent, and a file committed earlier keeps its first batch key; the version is the
        # one this commit read.
        def update(uri: str) -> dict[str, Any]:
            expression = "SET batch_key = if_not_exists(batch_key, :k), committed_at = if_not_exists(committed_at, :t)"
            values = {":k": {"S": batch_key}, ":t": {"S": at}}
            if uri in versions:
                expression += ", version = :v"
                values[":v"] = {"S": versions[uri]}
            return {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": _FILE + uri}},
                    "UpdateExpression": expression,
                    "ExpressionAttributeValues": values,
                }
            }

        updates = [update(uri) for uri in uris]
        self._write("UpdateItem files", fence, updates)

    def commit(
        self,
        batch_key: str,
        uris: Sequence[str],
        at: datetime,
        fence: Fence | None = None,
        versions: Mapping[str, str] | None = None,
        summary: str | None = None,
    ) -> None:
        stamp = utc_iso(at)
        unique = list(dict.fromkeys(uris))
        # A fenced chunk is one transaction: the lease check plus at most 99 files (TransactWriteItems holds 100).
        size = _TRANSACTION_MAX - 1 if fence else 1
        chunks = [unique[i : i + size] for i in range(0, len(unique), size)]
        if chunks:
            # Fenced transactions one after another: ten of them cover 990 files, and parallel transactions only
            # add TransactionConflict retries (and trip moto, whose transactions are not thread-safe).
            workers = 1 if fence else min(_COMMIT_WORKERS, len(chunks))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                # list(): wait for every write and re-raise the first failure before the intent may close.
                list(pool.map(lambda chunk: self._mark(chunk, batch_key, stamp, fence, versions or {}), chunks))
        # Files first, intent last: a crash in between leaves the intent open and a restart re-commits it.
        if summary is None:
            self._close(batch_key, len(_cut(uris)), fence)
            return
        keep = {
            "Update": {
                "TableName": self.table,
                "Key": {"pk": {"S": _INTENT + batch_key}},
                "UpdateExpression": "SET intent_open = :log, summary = :s",
                # Only an intent `begin` wrote: never an item of a summary alone, which no listing could read.
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": {":log": {"S": _LOG}, ":s": {"S": summary}},
            }
        }
        self._write("UpdateItem intent", fence, [keep])

    def unlogged(self) -> list[tuple[BatchIntent, str]]:
        return [(intent, item["summary"]["S"]) for intent, item in self._intents(_LOG) if "summary" in item]

    def logged(self, batch_keys: Sequence[str], fence: Fence | None = None) -> None:
        for key in batch_keys:
            item = self._intent_item(key)
            if item.get("intent_open", {}).get("S") == _LOG:  # an open intent is not closed here
                self._close(key, int(item.get("parts", {}).get("N", "1")), fence)

    def abandon(self, batch_key: str, fence: Fence | None = None) -> None:
        item = self._intent_item(batch_key)
        self._close(batch_key, int(item.get("parts", {}).get("N", "1")), fence)

    def _intent_item(self, batch_key: str) -> Item:
        with self._guard("GetItem intent"):
            item: Item = self._client.get_item(
                TableName=self.table, Key={"pk": {"S": _INTENT + batch_key}}, ConsistentRead=True
            ).get("Item", {})
        return item

    def _close(self, batch_key: str, parts: int, fence: Fence | None) -> None:
        # The intent item first (that closes it), then its parts; a crash in between leaves parts nothing reads.
        delete = {"Delete": {"TableName": self.table, "Key": {"pk": {"S": _INTENT + batch_key}}}}
        self._write("DeleteItem intent", fence, [delete])
        for n in range(1, parts):
            with self._guard("DeleteItem intent part"):
                self._client.delete_item(TableName=self.table, Key={"pk": {"S": f"{_PART}{batch_key}#{n}"}})

    def open_intents(self) -> list[BatchIntent]:
        return [intent for intent, _ in self._intents(_OPEN)]

    def _intents(self, state: str) -> list[tuple[BatchIntent, Item]]:
        """The intents whose GSI key is `state`, each with its item, oldest first."""
        keys: list[str] = []
        with self._guard("Query open_intents"):
            pages = self._client.get_paginator("query").paginate(
                TableName=self.table,
                IndexName=INDEX,
                KeyConditionExpression="intent_open = :o",
                ExpressionAttributeValues={":o": {"S": state}},
                ProjectionExpression="pk",
            )
            for page in pages:
                keys.extend(item["pk"]["S"] for item in page.get("Items", []))
        # A GSI is only eventually consistent: re-read the intents from the table so one just committed (deleted)
        # or replaced does not come back stale.
        items: list[Item] = []
        for i in range(0, len(keys), _BATCH_GET_MAX):
            items.extend(self._batch_get(list(dict.fromkeys(keys[i : i + _BATCH_GET_MAX])), None))
        intents = [
            (
                BatchIntent(
                    batch_key=item["pk"]["S"][len(_INTENT) :],
                    run_id=item["run_id"]["S"],
                    batch_id=int(item["batch_id"]["N"]),
                    files=self._files(item),
                    started_at=datetime.fromisoformat(item["started_at"]["S"]),
                ),
                item,
            )
            for item in items
            if item.get("intent_open", {}).get("S") == state
        ]
        return sorted(intents, key=lambda it: (it[0].started_at, it[0].batch_key))

    def _files(self, item: Item) -> tuple[str, ...]:
        """An intent's files: its own list, then those of its parts in order."""
        files = [f["S"] for f in item["files"]["L"]]
        key = item["pk"]["S"][len(_INTENT) :]
        part_keys = [f"{_PART}{key}#{n}" for n in range(1, int(item.get("parts", {}).get("N", "1")))]
        for i in range(0, len(part_keys), _BATCH_GET_MAX):
            by_key = {p["pk"]["S"]: p for p in self._batch_get(part_keys[i : i + _BATCH_GET_MAX], None)}
            for part_key in part_keys[i : i + _BATCH_GET_MAX]:
                if part_key not in by_key:  # written before the intent item, so only a bug or a hand edit gets here
                    raise LedgerUnavailable(f"DynamoDB ledger {self.table}: intent {key} is missing a part")
                files.extend(f["S"] for f in by_key[part_key]["files"]["L"])
        return tuple(files)

    def acquire_lease(self, name: str, owner: str, ttl: timedelta) -> int:
        now = self._clock()
        expires = now + ttl
        times = {
            ":exp": {"S": utc_iso(expires)},
            ":expn": {"N": f"{expires.timestamp():.6f}"},
            ":zero": {"N": "0"},
            ":now_at": {"S": utc_iso(now)},
        }
        key = {"pk": {"S": _LEASE + name}}
        try:  # the common case, a renewal: same owner, same epoch (and when it was taken, kept)
            response = self._lease_client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET expires_at = :exp, expires_epoch = :expn, epoch = if_not_exists(epoch, :zero),"
                " renewed_at = :now_at, acquired_at = if_not_exists(acquired_at, :now_at) REMOVE released_at",
                ConditionExpression="#o = :owner",  # `owner` is a DynamoDB reserved word, hence #o
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={**times, ":owner": {"S": owner}},
                ReturnValues="ALL_NEW",
            )
            return int(response["Attributes"]["epoch"]["N"])
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise ledger_error("UpdateItem lease", self.table, exc) from exc
        except BotoCoreError as exc:
            raise ledger_error("UpdateItem lease", self.table, exc) from exc
        try:  # a takeover: free or expired; the epoch goes up by one
            response = self._lease_client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET #o = :owner, expires_at = :exp, expires_epoch = :expn,"
                " epoch = if_not_exists(epoch, :zero) + :one, acquired_at = :now_at, renewed_at = :now_at"
                " REMOVE released_at",
                ConditionExpression="attribute_not_exists(pk) OR expires_epoch < :now",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={
                    **times,
                    ":owner": {"S": owner},
                    ":one": {"N": "1"},
                    ":now": {"N": f"{now.timestamp():.6f}"},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return int(response["Attributes"]["epoch"]["N"])
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise ledger_error("UpdateItem lease", self.table, exc) from exc
            held: Item = exc.response.get("Item") or self._lease_item(name)
            holder = held.get("owner", {}).get("S", "?")
            until = held.get("expires_at", {}).get("S", "?")
            raise LeaseHeld(f"lease {name!r} is held by {holder} until {until}") from None
        except BotoCoreError as exc:
            raise ledger_error("UpdateItem lease", self.table, exc) from exc

    def _lease_item(self, name: str) -> Item:
        with self._guard("GetItem lease"):
            response = self._client.get_item(
                TableName=self.table, Key={"pk": {"S": _LEASE + name}}, ConsistentRead=True
            )
        item: Item = response.get("Item", {})
        return item

    def release_lease(self, name: str, owner: str) -> None:
        # Expired, not deleted: the item keeps the epoch, so the next holder's is higher still.
        try:
            self._lease_client.update_item(
                TableName=self.table,
                Key={"pk": {"S": _LEASE + name}},
                UpdateExpression="SET expires_epoch = :zero, expires_at = :start, released_at = :now_at",
                ConditionExpression="#o = :owner",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":zero": {"N": "0"},
                    ":start": {"S": utc_iso(datetime.fromtimestamp(0, UTC))},
                    ":now_at": {"S": utc_iso(self._clock())},
                },
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":  # not ours (or gone): nothing to give up
                raise ledger_error("UpdateItem lease", self.table, exc) from exc
        except BotoCoreError as exc:
            raise ledger_error("UpdateItem lease", self.table, exc) from exc

    def lease(self, name: str) -> LeaseState | None:
        item = self._lease_item(name)
        if not item:
            return None

        def at(attribute: str) -> datetime | None:
            text = item.get(attribute, {}).get("S")
            return None if text is None else datetime.fromisoformat(text)

        expires = at("expires_at") or datetime.fromtimestamp(0, UTC)
        return LeaseState(
            name,
            item["owner"]["S"],
            int(item.get("epoch", {}).get("N", "0")),
            expires,
            at("acquired_at"),
            at("renewed_at"),
            at("released_at"),
        )

    def close(self) -> None:
        """Nothing to release: the boto3 client is shared (see `aws.client`)."""


def _cut(files: Sequence[str]) -> list[list[str]]:
    """Cut a file list into consecutive pieces of at most _PART_BYTES each (always at least one piece)."""
    parts: list[list[str]] = [[]]
    size = 0
    for uri in files:
        cost = len(uri.encode()) + 3  # DynamoDB counts a list element's bytes plus about one byte of overhead
        if parts[-1] and size + cost > _PART_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(uri)
        size += cost
    return parts
