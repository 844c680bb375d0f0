"""One contract, two stores: every Ledger test runs against SQLite and against DynamoDB (moto server)."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_fixtures import create_ledger_table
from botocore.config import Config

from streaming.adapters import aws
from streaming.ledger import (
    BatchIntent,
    Fence,
    LeaseHeld,
    LeaseLost,
    LeaseState,
    Ledger,
    LedgerMisconfigured,
    LedgerUnavailable,
    SqliteLedger,
)
from streaming.ledger import dynamodb as ddb
from streaming.ledger.dynamodb import DynamoDbLedger

T0 = datetime(2024, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
LIVE, GONE = timedelta(minutes=5), timedelta(seconds=-1)  # GONE: a lease already expired when written
ODD_URIS = [
    "s3://bucket/landing/with space.ndjson",
    "s3://bucket/landing/100%25 done%.ndjson",
    "s3://bucket/landing/hash#frag.ndjson",
    "file:///tmp/landing/ünïcödé-病院-🏥.json",
    "s3://bucket/landing/quote'\"and?query=1&b=2.ndjson",
    "file#s3://looks-like-a-key-prefix",
    "intent#not-an-intent",
    "s3://bucket/landing/a.ndjson",
    "s3://bucket/landing/a.ndjson.bak",  # the first is a prefix of this one
]


@dataclass
class Store:
    """A ledger implementation under test: how to open it (again) and how to peek at a file's record."""

    kind: str
    open: Callable[[], Ledger]
    record: Callable[[str], tuple[str, str] | None]  # uri -> (batch_key, committed_at), read from the store itself
    version: Callable[[str], str | None]  # uri -> the version its last commit recorded


def _sqlite_store(path: Path) -> Store:
    def record(uri: str) -> tuple[str, str] | None:
        with sqlite3.connect(path) as db:
            row = db.execute("SELECT batch_key, committed_at FROM files WHERE uri = ?", (uri,)).fetchone()
        return (row[0], row[1]) if row else None

    def version(uri: str) -> str | None:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT version FROM files WHERE uri = ?", (uri,)).fetchone()[0]

    return Store("sqlite", lambda: SqliteLedger(path), record, version)


def _dynamodb_store(table: str) -> Store:
    create_ledger_table(table)

    def record(uri: str) -> tuple[str, str] | None:
        item = aws.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": "file#" + uri}}, ConsistentRead=True)
        found = item.get("Item")
        return (found["batch_key"]["S"], found["committed_at"]["S"]) if found else None

    def version(uri: str) -> str | None:
        item = aws.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": "file#" + uri}}, ConsistentRead=True)
        return item["Item"].get("version", {}).get("S")

    return Store("dynamodb", lambda: DynamoDbLedger(table), record, version)


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Each implementation in turn, on fresh storage (a new SQLite file, a new DynamoDB table)."""
    if request.param == "sqlite":
        return _sqlite_store(tmp_path / "ledger" / "ledger.sqlite3")
    request.getfixturevalue("aws_env")
    return _dynamodb_store(request.getfixturevalue("unique_name"))


@pytest.fixture
def ledger(store: Store) -> Iterator[Ledger]:
    opened = store.open()
    yield opened
    opened.close()


def _intent(key: str, files: list[str], started: datetime = T0, run: str = "run-1", batch: int = 7) -> BatchIntent:
    return BatchIntent(batch_key=key, run_id=run, batch_id=batch, files=tuple(files), started_at=started)


# --- committed() ---------------------------------------------------------------------------------------------


def test_committed_on_an_empty_store_is_empty(ledger: Ledger) -> None:
    assert ledger.committed(["s3://b/a.ndjson", "s3://b/b.ndjson"]) == set()
    assert ledger.committed([]) == set()


def test_committed_returns_exactly_the_committed_subset(ledger: Ledger) -> None:
    ledger.commit("batch-a", ["s3://b/1.ndjson", "s3://b/2.ndjson"], T0)
    asked = ["s3://b/0.ndjson", "s3://b/1.ndjson", "s3://b/2.ndjson", "s3://b/3.ndjson"]
    assert ledger.committed(asked) == {"s3://b/1.ndjson", "s3://b/2.ndjson"}
    assert ledger.committed(iter(asked)) == {"s3://b/1.ndjson", "s3://b/2.ndjson"}  # any iterable, once


def test_committed_tolerates_duplicate_uris(ledger: Ledger) -> None:
    ledger.commit("batch-a", ["s3://b/1.ndjson"], T0)
    asked = ["s3://b/1.ndjson", "s3://b/9.ndjson", "s3://b/1.ndjson", "s3://b/9.ndjson", "s3://b/1.ndjson"]
    assert ledger.committed(asked) == {"s3://b/1.ndjson"}


_CHUNK = {"sqlite": SqliteLedger._CHUNK, "dynamodb": ddb._BATCH_GET_MAX}  # an IN list; a BatchGetItem's keys


@pytest.mark.parametrize("chunks", [1.5, 2.5])
def test_committed_over_many_chunks(store: Store, ledger: Ledger, chunks: float) -> None:
    """More than one chunk per call, at each store's own chunk size (1,234 keys through moto cost 3.8 s, proved no
    more than 250)."""
    size = _CHUNK[store.kind]
    uris = [f"s3://bucket/landing/2024/03/01/file-{i:05d}.ndjson" for i in range(int(size * chunks))]
    done = uris[::3]
    ledger.commit("batch-a", done, T0)
    assert ledger.committed(uris) == set(done)
    assert ledger.committed(uris + uris[: size // 2]) == set(done)  # duplicates across chunk boundaries


def test_committed_with_odd_characters(ledger: Ledger) -> None:
    committed = ODD_URIS[::2]
    ledger.commit("batch-odd", committed, T0)
    assert ledger.committed(ODD_URIS) == set(committed)
    for uri in ODD_URIS:
        assert ledger.committed([uri]) == ({uri} if uri in committed else set())


def test_an_open_intent_does_not_count_as_committed(ledger: Ledger) -> None:
    ledger.begin(_intent("s3://b/1.ndjson", ["s3://b/1.ndjson"]))  # batch key equal to a uri: separate namespaces
    ledger.acquire_lease("s3://b/2.ndjson", "owner-a", timedelta(minutes=5))
    assert ledger.committed(["s3://b/1.ndjson", "s3://b/2.ndjson"]) == set()


# --- intents -------------------------------------------------------------------------------------------------


def test_open_intents_on_an_empty_store_is_empty(ledger: Ledger) -> None:
    assert ledger.open_intents() == []


def test_begin_round_trips_every_field(ledger: Ledger) -> None:
    intent = _intent("run-1/7", ["s3://b/x y.ndjson", "file:///tmp/é#1.json", "s3://b/z.ndjson"], run="run-1")
    ledger.begin(intent)
    [back] = ledger.open_intents()
    assert back == intent
    assert back.files == ("s3://b/x y.ndjson", "file:///tmp/é#1.json", "s3://b/z.ndjson")  # order kept
    assert back.started_at.utcoffset() == timedelta(0)
    assert isinstance(back.batch_id, int)


def test_begin_normalises_started_at_to_utc(ledger: Ledger) -> None:
    plus_two = timezone(timedelta(hours=2))
    ledger.begin(_intent("k", ["s3://b/1"], started=datetime(2024, 3, 1, 10, 0, tzinfo=plus_two)))
    [back] = ledger.open_intents()
    assert back.started_at == datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    assert back.started_at.utcoffset() == timedelta(0)


def test_begin_with_no_files_round_trips(ledger: Ledger) -> None:
    ledger.begin(_intent("empty", []))
    assert ledger.open_intents() == [_intent("empty", [])]


def test_open_intents_are_oldest_first_then_by_key(ledger: Ledger) -> None:
    late = _intent("a-late", ["s3://b/3"], started=T0 + timedelta(seconds=30), batch=3)
    early = _intent("z-early", ["s3://b/1"], started=T0 - timedelta(minutes=5), batch=1)
    tie_b = _intent("tie-b", ["s3://b/2b"], started=T0, batch=2)
    tie_a = _intent("tie-a", ["s3://b/2a"], started=T0, batch=2)
    sub_second = _intent("sub", ["s3://b/4"], started=T0.replace(microsecond=0) + timedelta(seconds=1), batch=4)
    for intent in (late, tie_b, sub_second, early, tie_a):
        ledger.begin(intent)
    assert ledger.open_intents() == [early, tie_a, tie_b, sub_second, late]


def test_begin_with_the_same_key_replaces(ledger: Ledger) -> None:
    ledger.begin(_intent("run-1/7", ["s3://b/old-1", "s3://b/old-2"], run="run-1", batch=7))
    replay = _intent("run-1/7", ["s3://b/new"], started=T0 + timedelta(minutes=1), run="run-2", batch=8)
    ledger.begin(replay)
    assert ledger.open_intents() == [replay]


def test_commit_marks_files_and_closes_the_intent(store: Store, ledger: Ledger) -> None:
    files = ["s3://b/1.ndjson", "s3://b/2.ndjson"]
    other = _intent("run-1/8", ["s3://b/3.ndjson"], started=T0 + timedelta(seconds=5), batch=8)
    ledger.begin(_intent("run-1/7", files))
    ledger.begin(other)
    ledger.commit("run-1/7", files, T0 + timedelta(seconds=10))
    assert ledger.committed([*files, "s3://b/3.ndjson"]) == set(files)
    assert ledger.open_intents() == [other]  # only the committed batch's intent closes
    stamp = (T0 + timedelta(seconds=10)).isoformat()
    assert [store.record(f) for f in files] == [("run-1/7", stamp), ("run-1/7", stamp)]
    assert store.record("s3://b/3.ndjson") is None


def test_a_commit_with_a_summary_keeps_the_batch_until_its_log_row_is_written(store: Store, ledger: Ledger) -> None:
    files = ["s3://b/1.ndjson", "s3://b/2.ndjson"]
    first, second = _intent("run-1/7", files), _intent("run-1/8", ["s3://b/3.ndjson"], T0 + timedelta(seconds=5))
    still_open = _intent("run-1/9", ["s3://b/4.ndjson"], T0 + timedelta(seconds=9), batch=9)
    for intent in (second, first, still_open):
        ledger.begin(intent)
    ledger.commit("run-1/8", ["s3://b/3.ndjson"], T0, summary='{"n": 8}')
    ledger.commit("run-1/7", files, T0, summary='{"n": 7, "text": "ünï "q""}')
    # Committed (the files count), no longer open, each waiting with its summary, oldest first.
    assert ledger.committed([*files, "s3://b/3.ndjson", "s3://b/4.ndjson"]) == {*files, "s3://b/3.ndjson"}
    assert ledger.open_intents() == [still_open]
    assert ledger.unlogged() == [(first, '{"n": 7, "text": "ünï "q""}'), (second, '{"n": 8}')]
    assert store.open().unlogged() == ledger.unlogged()  # it survives a new instance

    ledger.logged(["run-1/7"])
    assert ledger.unlogged() == [(second, '{"n": 8}')]
    ledger.logged(["run-1/8", "run-1/9"])  # an open intent is not closed by `logged`
    assert ledger.unlogged() == []
    assert ledger.open_intents() == [still_open]
    assert ledger.committed(files) == set(files)  # the files stay committed


def test_an_intent_of_1000_long_uris_waits_for_its_log_row_whole(ledger: Ledger) -> None:
    files = _long_uris(1000, "logged")
    ledger.begin(_intent("big", files))
    ledger.abandon("big")  # committing 1,000 files through moto takes seconds; the intent's files are the point
    ledger.begin(_intent("big", files))
    ledger.commit("big", [], T0, summary="{}")
    assert ledger.unlogged() == [(_intent("big", files), "{}")]
    ledger.logged(["big"])
    assert ledger.unlogged() == ledger.open_intents() == []


def test_logged_is_fenced(ledger: Ledger) -> None:
    stale = Fence("writer", "owner-a", ledger.acquire_lease("writer", "owner-a", GONE))
    ledger.begin(_intent("a-1", ["s3://b/1.ndjson"]), stale)
    ledger.commit("a-1", ["s3://b/1.ndjson"], T0, stale, summary="{}")
    fresh = Fence("writer", "owner-b", ledger.acquire_lease("writer", "owner-b", LIVE))
    with pytest.raises(LeaseLost):
        ledger.logged(["a-1"], stale)
    assert [i.batch_key for i, _ in ledger.unlogged()] == ["a-1"]
    ledger.logged(["a-1"], fresh)
    assert ledger.unlogged() == []


def _long_uris(count: int, tag: str, length: int = 300) -> list[str]:
    """`count` distinct URIs of `length` characters: a deep S3 prefix, as some feeds name their files."""
    return [f"s3://bucket/{tag}/{i:05d}/".ljust(length - 12, "x") + f"{i:05d}.ndjson" for i in range(count)]


# commit: ~7 s against moto (1,000 conditional updates), so it runs with the slow tests; abandon stays quick.
@pytest.mark.parametrize("action", [pytest.param("commit", marks=pytest.mark.slow), "abandon"])
def test_an_intent_of_1000_long_uris_round_trips_and_closes(ledger: Ledger, action: str) -> None:
    files = _long_uris(1000, "deep")
    assert {len(f) for f in files} == {300}
    ledger.begin(_intent("big", files))  # ~300 KB of keys alone: near DynamoDB's 400 KB item limit
    small = _intent("small", ["s3://b/1.ndjson"], started=T0 + timedelta(seconds=1))
    ledger.begin(small)
    assert ledger.open_intents() == [_intent("big", files), small]  # every file, in order

    if action == "commit":
        ledger.commit("big", files, T0)
        assert ledger.committed(files) == set(files)
    else:
        ledger.abandon("big")
        assert ledger.committed(files) == set()
    assert ledger.open_intents() == [small]

    # The same key begun again with fewer files does not pick up an earlier, longer list's pieces.
    fewer = _intent("big", files[:3])
    ledger.begin(fewer)
    assert ledger.open_intents() == [fewer, small]


# moto copies the whole table for each action of a transaction: seconds here, so it runs with the slow tests.
@pytest.mark.slow
def test_dynamodb_leaves_no_intent_pieces_behind(aws_env: str, unique_name: str) -> None:
    create_ledger_table(unique_name)
    ledger = DynamoDbLedger(unique_name)
    # ~450 KB of keys, more than one item holds, in as few files as S3's 1,024-byte keys allow: each file is a
    # transaction action, and moto's cost grows with actions times items.
    files = _long_uris(450, "many", length=1000)
    fence = Fence("writer", "owner-a", ledger.acquire_lease("writer", "owner-a", LIVE))
    ledger.begin(_intent("k", files), fence)

    def keys() -> list[str]:
        items = aws.client("dynamodb").scan(TableName=unique_name, ProjectionExpression="pk")["Items"]
        return [i["pk"]["S"] for i in items if not i["pk"]["S"].startswith(("file#", "lease#"))]

    assert sorted(k.split("#")[0] for k in keys()) == ["intent", "intentpart"]  # the intent took two items
    ledger.commit("k", files, T0, fence)  # fenced: 99 files per transaction
    assert ledger.committed(files) == set(files)
    assert keys() == []


def test_a_file_s_version_is_recorded_and_follows_a_reingest(store: Store, ledger: Ledger) -> None:
    ledger.begin(_intent("k1", ["s3://b/1.ndjson"]))
    ledger.commit("k1", ["s3://b/1.ndjson"], T0, versions={"s3://b/1.ndjson": "10@2024-01-01T00:00:00+00:00"})
    assert store.version("s3://b/1.ndjson") == "10@2024-01-01T00:00:00+00:00"
    ledger.begin(_intent("k2", ["s3://b/1.ndjson"]))  # the corrected file, taken again
    ledger.commit("k2", ["s3://b/1.ndjson"], T0 + timedelta(hours=1), versions={"s3://b/1.ndjson": "12@2024-01-02"})
    assert store.version("s3://b/1.ndjson") == "12@2024-01-02"
    assert store.record("s3://b/1.ndjson") == ("k1", T0.isoformat())  # still the batch that first committed it


def test_versions_reads_back_what_commits_recorded(ledger: Ledger) -> None:
    ledger.commit("k1", ["s3://b/1.ndjson", "s3://b/2.ndjson"], T0, versions={"s3://b/1.ndjson": "10@t1"})
    ledger.commit("k2", ["s3://b/1.ndjson"], T0, versions={"s3://b/1.ndjson": "12@t2"})
    # The newest version of a file; a file committed without one and a file never committed have none.
    assert ledger.versions(["s3://b/1.ndjson", "s3://b/2.ndjson", "s3://b/3.ndjson"]) == {"s3://b/1.ndjson": "12@t2"}
    many = [f"s3://b/many/{i:04d}.ndjson" for i in range(230)]  # over one BatchGetItem or SQL chunk
    ledger.commit("k3", many, T0, versions={u: f"{i}@t" for i, u in enumerate(many)})
    assert ledger.versions(many) == {u: f"{i}@t" for i, u in enumerate(many)}


def test_a_decision_is_recorded_once_and_read_back(store: Store, ledger: Ledger) -> None:
    assert ledger.decisions(["d1"]) == {}
    ledger.decide({"d1": "2024-01-01T00:00:00.000001+00:00", "d2": "x"})
    ledger.decide({"d1": "a later, different decision", "d3": "y"})  # a replayed batch: the first one stays
    assert ledger.decisions(["d1", "d2", "d3", "d4"]) == {
        "d1": "2024-01-01T00:00:00.000001+00:00",
        "d2": "x",
        "d3": "y",
    }
    reopened = store.open()
    try:
        assert reopened.decisions(["d2"]) == {"d2": "x"}
    finally:
        reopened.close()


def test_decisions_are_fenced(ledger: Ledger) -> None:
    epoch = ledger.acquire_lease("t", "run-a", timedelta(seconds=60))
    many = {f"d{i}": str(i) for i in range(150)}  # more than one DynamoDB transaction
    ledger.decide(many, Fence("t", "run-a", epoch))
    assert ledger.decisions(many) == many
    with pytest.raises(LeaseLost):
        ledger.decide({"stale": "1"}, Fence("t", "run-a", epoch + 1))
    assert ledger.decisions(["stale"]) == {}


def test_commit_is_idempotent(store: Store, ledger: Ledger) -> None:
    files = ["s3://b/1.ndjson", "s3://b/2.ndjson", "s3://b/1.ndjson"]  # a duplicate inside one commit, too
    ledger.begin(_intent("k1", files))
    ledger.commit("k1", files, T0)
    ledger.commit("k1", files, T0 + timedelta(hours=1))  # a replay after a crash, later
    assert ledger.committed(files) == {"s3://b/1.ndjson", "s3://b/2.ndjson"}
    assert ledger.open_intents() == []
    assert store.record("s3://b/1.ndjson") == ("k1", T0.isoformat())


def test_a_file_keeps_the_batch_that_first_committed_it(store: Store, ledger: Ledger) -> None:
    ledger.commit("batch-a", ["s3://b/shared", "s3://b/only-a"], T0)
    before = ledger.committed(["s3://b/shared", "s3://b/only-a", "s3://b/only-b"])
    ledger.begin(_intent("batch-b", ["s3://b/shared", "s3://b/only-b"]))
    ledger.commit("batch-b", ["s3://b/shared", "s3://b/only-b"], T0 + timedelta(minutes=1))
    assert before == {"s3://b/shared", "s3://b/only-a"}
    assert ledger.committed(["s3://b/shared", "s3://b/only-a", "s3://b/only-b"]) == {
        "s3://b/shared",
        "s3://b/only-a",
        "s3://b/only-b",
    }
    assert store.record("s3://b/shared") == ("batch-a", T0.isoformat())
    assert store.record("s3://b/only-b") == ("batch-b", (T0 + timedelta(minutes=1)).isoformat())
    assert ledger.open_intents() == []


def test_commit_without_files_closes_the_intent(ledger: Ledger) -> None:
    ledger.begin(_intent("k-empty", []))
    ledger.commit("k-empty", [], T0)
    assert ledger.open_intents() == []


def test_abandon_closes_the_intent_without_committing(store: Store, ledger: Ledger) -> None:
    keep = _intent("keep", ["s3://b/k"], started=T0 + timedelta(seconds=1))
    ledger.begin(_intent("drop", ["s3://b/1", "s3://b/2"]))
    ledger.begin(keep)
    ledger.abandon("drop")
    assert ledger.open_intents() == [keep]
    assert ledger.committed(["s3://b/1", "s3://b/2"]) == set()
    assert store.record("s3://b/1") is None
    ledger.abandon("drop")  # again, and a key never begun: no error, no change
    ledger.abandon("never-begun")
    assert ledger.open_intents() == [keep]


def test_state_survives_a_new_instance(store: Store) -> None:
    first = store.open()
    first.commit("batch-a", ["s3://b/1", "s3://b/2"], T0)
    open_one = _intent("batch-b", ["s3://b/3"], started=T0 + timedelta(seconds=1), batch=8)
    first.begin(open_one)
    first.acquire_lease("writer", "owner-a", timedelta(minutes=5))
    first.close()

    second = store.open()
    try:
        assert second.committed(["s3://b/1", "s3://b/2", "s3://b/3"]) == {"s3://b/1", "s3://b/2"}
        assert second.open_intents() == [open_one]
        with pytest.raises(LeaseHeld, match="owner-a"):
            second.acquire_lease("writer", "owner-b", timedelta(minutes=5))
    finally:
        second.close()


# --- leases --------------------------------------------------------------------------------------------------


def test_lease_owner_can_renew_and_others_are_refused(ledger: Ledger) -> None:
    ledger.acquire_lease("writer", "owner-a", timedelta(minutes=5))
    ledger.acquire_lease("writer", "owner-a", timedelta(minutes=10))  # renewal by the holder
    with pytest.raises(LeaseHeld) as refused:
        ledger.acquire_lease("writer", "owner-b", timedelta(minutes=5))
    message = str(refused.value)
    assert "'writer'" in message
    assert "owner-a" in message
    until = datetime.fromisoformat(message.rsplit(" until ", 1)[1])
    # The renewal moved the expiry to ~10 minutes from now, not the first 5.
    assert timedelta(minutes=9) < until - datetime.now(UTC) <= timedelta(minutes=10)


def test_leases_with_other_names_are_independent(ledger: Ledger) -> None:
    ledger.acquire_lease("table-1", "owner-a", timedelta(minutes=5))
    ledger.acquire_lease("table-2", "owner-b", timedelta(minutes=5))
    with pytest.raises(LeaseHeld, match="owner-b"):
        ledger.acquire_lease("table-2", "owner-a", timedelta(minutes=5))


def test_an_expired_lease_can_be_taken(ledger: Ledger) -> None:
    ledger.acquire_lease("writer", "owner-a", LIVE)
    with pytest.raises(LeaseHeld):
        ledger.acquire_lease("writer", "owner-b", timedelta(minutes=5))
    ledger.acquire_lease("writer", "owner-a", GONE)  # A's last renewal has run out
    ledger.acquire_lease("writer", "owner-b", timedelta(minutes=5))
    with pytest.raises(LeaseHeld, match="owner-b"):  # and now A is the one refused
        ledger.acquire_lease("writer", "owner-a", timedelta(minutes=5))


def test_the_lease_epoch_only_grows(ledger: Ledger) -> None:
    assert ledger.acquire_lease("writer", "owner-a", GONE) == 1
    assert ledger.acquire_lease("writer", "owner-a", LIVE) == 1  # a renewal (even a late one) keeps the epoch
    ledger.release_lease("writer", "owner-a")
    assert ledger.acquire_lease("writer", "owner-b", GONE) == 2  # a takeover adds one, also after a release
    assert ledger.acquire_lease("writer", "owner-a", LIVE) == 3
    assert ledger.acquire_lease("other", "owner-a", LIVE) == 1  # epochs are per lease


def test_a_stale_fence_changes_nothing(store: Store, ledger: Ledger) -> None:
    stale = Fence("writer", "owner-a", ledger.acquire_lease("writer", "owner-a", GONE))
    ledger.begin(_intent("a-1", ["s3://b/1.ndjson"]), stale)  # still the holder: accepted
    fresh = Fence("writer", "owner-b", ledger.acquire_lease("writer", "owner-b", LIVE))  # A stalled; B took over

    with pytest.raises(LeaseLost, match="owner-a"):
        ledger.begin(_intent("a-2", ["s3://b/2.ndjson"]), stale)
    with pytest.raises(LeaseLost):
        ledger.commit("a-1", ["s3://b/1.ndjson"], T0, stale)
    with pytest.raises(LeaseLost):
        ledger.abandon("a-1", stale)
    assert [i.batch_key for i in ledger.open_intents()] == ["a-1"]
    assert ledger.committed(["s3://b/1.ndjson", "s3://b/2.ndjson"]) == set()
    assert store.record("s3://b/1.ndjson") is None

    ledger.commit("a-1", ["s3://b/1.ndjson"], T0, fresh)  # the new holder finishes what A left open
    assert ledger.committed(["s3://b/1.ndjson"]) == {"s3://b/1.ndjson"}
    assert ledger.open_intents() == []


def test_a_fence_of_a_lease_nobody_holds_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LeaseLost):
        ledger.begin(_intent("k", ["s3://b/1.ndjson"]), Fence("never-taken", "owner-a", 1))
    assert ledger.open_intents() == []


def test_release_lets_another_owner_in(ledger: Ledger) -> None:
    ledger.acquire_lease("writer", "owner-a", timedelta(minutes=5))
    ledger.release_lease("writer", "owner-a")
    ledger.acquire_lease("writer", "owner-b", timedelta(minutes=5))
    with pytest.raises(LeaseHeld, match="owner-b"):
        ledger.acquire_lease("writer", "owner-a", timedelta(minutes=5))


def test_release_by_a_non_owner_does_nothing(ledger: Ledger) -> None:
    ledger.acquire_lease("writer", "owner-a", timedelta(minutes=5))
    ledger.release_lease("writer", "owner-b")
    ledger.release_lease("never-taken", "owner-b")
    with pytest.raises(LeaseHeld, match="owner-a"):
        ledger.acquire_lease("writer", "owner-b", timedelta(minutes=5))


def test_a_lease_never_taken_reads_as_none_and_reading_takes_nothing(ledger: Ledger) -> None:
    assert ledger.lease("writer") is None
    assert ledger.lease("writer") is None
    assert ledger.acquire_lease("writer", "owner-a", LIVE) == 1  # reading created no lease item


def test_a_lease_reads_back_its_holder_and_times_through_renewal_release_and_takeover(ledger: Ledger) -> None:
    before = datetime.now(UTC)
    ledger.acquire_lease("writer", "owner-a", LIVE)
    taken = ledger.lease("writer")
    after = datetime.now(UTC)
    assert taken is not None
    assert (taken.name, taken.owner, taken.epoch, taken.released_at, taken.released) == (
        "writer",
        "owner-a",
        1,
        None,
        False,
    )
    assert taken.acquired_at is not None and taken.renewed_at is not None
    assert before <= taken.acquired_at == taken.renewed_at <= after
    assert taken.expires_at == taken.renewed_at + LIVE
    assert taken.live(after) and not taken.live(taken.expires_at)

    ledger.acquire_lease("writer", "owner-a", timedelta(minutes=10))  # a renewal
    renewed = ledger.lease("writer")
    assert renewed is not None and renewed.renewed_at is not None
    assert (renewed.owner, renewed.epoch, renewed.acquired_at) == ("owner-a", 1, taken.acquired_at)
    assert taken.renewed_at <= renewed.renewed_at <= datetime.now(UTC)
    assert renewed.expires_at == renewed.renewed_at + timedelta(minutes=10)

    ledger.release_lease("writer", "owner-a")
    released = ledger.lease("writer")
    assert released is not None and released.released_at is not None
    assert (released.owner, released.epoch, released.renewed_at) == ("owner-a", 1, renewed.renewed_at)
    assert renewed.renewed_at <= released.released_at <= datetime.now(UTC)
    assert released.released and not released.live(released.released_at)

    ledger.acquire_lease("writer", "owner-b", LIVE)  # a takeover starts the times again
    taken_over = ledger.lease("writer")
    assert taken_over is not None and taken_over.acquired_at is not None
    assert (taken_over.owner, taken_over.epoch, taken_over.released_at) == ("owner-b", 2, None)
    assert released.released_at <= taken_over.acquired_at == taken_over.renewed_at
    assert ledger.lease("other") is None  # leases with other names stay apart


def test_a_lease_its_holder_never_released_reads_as_expired_not_released(ledger: Ledger) -> None:
    ledger.acquire_lease("writer", "owner-a", GONE)  # the holder's last renewal has run out: it died
    expired = ledger.lease("writer")
    assert expired is not None
    assert (expired.owner, expired.released, expired.released_at) == ("owner-a", False, None)
    assert not expired.live(datetime.now(UTC))


def test_a_sqlite_ledger_of_an_earlier_release_reads_its_lease_without_times(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # the leases table as releases before the lease times wrote it
        db.execute(
            "CREATE TABLE leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at TEXT NOT NULL,"
            " epoch INTEGER NOT NULL DEFAULT 0)"
        )
        db.execute("INSERT INTO leases VALUES ('writer', 'old-run', ?, 4)", ((T0 + LIVE).isoformat(),))
    db.close()
    ledger = SqliteLedger(path)
    try:
        assert ledger.lease("writer") == LeaseState("writer", "old-run", 4, T0 + LIVE, None, None, None)
        ledger.acquire_lease("writer", "new-run", LIVE)  # long expired: taken over, and now with its times
        state = ledger.lease("writer")
        assert state is not None and state.acquired_at is not None
        assert (state.owner, state.epoch, state.renewed_at) == ("new-run", 5, state.acquired_at)
    finally:
        ledger.close()


def test_a_sqlite_ledger_of_an_earlier_release_keeps_its_open_intents_open(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # the intents table before the ingest log was deferred: no summary column
        db.execute(
            "CREATE TABLE intents (batch_key TEXT PRIMARY KEY, run_id TEXT NOT NULL, batch_id INTEGER NOT NULL,"
            " files TEXT NOT NULL, started_at TEXT NOT NULL)"
        )
        db.execute("INSERT INTO intents VALUES ('old-1', 'old', 1, '[\"s3://b/1.ndjson\"]', ?)", (T0.isoformat(),))
    db.close()
    ledger = SqliteLedger(path)
    try:
        assert ledger.open_intents() == [_intent("old-1", ["s3://b/1.ndjson"], run="old", batch=1)]
        assert ledger.unlogged() == []
        ledger.commit("old-1", ["s3://b/1.ndjson"], T0, summary="{}")
        assert ledger.open_intents() == [] and [i.batch_key for i, _ in ledger.unlogged()] == ["old-1"]
    finally:
        ledger.close()


# --- DynamoDB only -------------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_dynamodb_unreachable_endpoint_raises_ledger_unavailable(
    aws_env: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    fast = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=1, read_timeout=1)
    ledger = DynamoDbLedger(unique_name, client=aws.client("dynamodb", "", fast))
    secret = "s3://bucket/patient-12345.ndjson"
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("BatchGetItem", lambda: ledger.committed([secret])),
        ("PutItem intent", lambda: ledger.begin(_intent("k", [secret]))),
        ("UpdateItem files", lambda: ledger.commit("k", [secret], T0)),
        ("GetItem intent", lambda: ledger.abandon("k")),
        ("Query open_intents", ledger.open_intents),
        ("UpdateItem lease", lambda: ledger.acquire_lease("writer", "owner-a", timedelta(seconds=5))),
        ("UpdateItem lease", lambda: ledger.release_lease("writer", "owner-a")),
    ]
    for operation, call in calls:
        with pytest.raises(LedgerUnavailable) as failed:
            call()
        message = str(failed.value)
        assert message == f"DynamoDB ledger {unique_name}: {operation} failed (EndpointConnectionError)"
        assert secret not in message


def test_dynamodb_missing_table_is_a_configuration_error_not_an_outage(aws_env: str, unique_name: str) -> None:
    ledger = DynamoDbLedger(unique_name)  # no table was created
    with pytest.raises(LedgerMisconfigured, match=rf"^DynamoDB ledger {unique_name}: .*ResourceNotFoundException"):
        ledger.committed(["s3://b/1"])
    with pytest.raises(LedgerMisconfigured, match="ResourceNotFoundException"):
        ledger.acquire_lease("writer", "owner-a", timedelta(seconds=5))
    assert not issubclass(LedgerMisconfigured, LedgerUnavailable)  # the job must not wait for it to heal


def test_dynamodb_table_without_the_index_is_a_configuration_error(aws_env: str, unique_name: str) -> None:
    aws.client("dynamodb").create_table(  # a table of another shape than deploy/template.json's
        TableName=unique_name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    ledger = DynamoDbLedger(unique_name)
    with pytest.raises(LedgerMisconfigured, match=rf"^DynamoDB ledger {unique_name}: Query open_intents failed \("):
        ledger.open_intents()


def test_dynamodb_open_intents_queries_the_index_and_never_scans(aws_env: str, unique_name: str) -> None:
    create_ledger_table(unique_name)
    # A private client, so the call recorder does not stay on the shared cached one.
    client = boto3.session.Session().client("dynamodb", endpoint_url=aws_env, region_name="us-east-1")
    seen: list[tuple[str, dict[str, Any]]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        seen.append((model.name, params))

    client.meta.events.register("before-parameter-build.dynamodb", record)
    ledger = DynamoDbLedger(unique_name, client=client)
    intents = [_intent(f"k{i}", [f"s3://b/{i}"], started=T0 + timedelta(seconds=i), batch=i) for i in range(3)]
    for intent in intents:
        ledger.begin(intent)
    ledger.commit("k1", ["s3://b/1"], T0)
    seen.clear()
    assert ledger.open_intents() == [intents[0], intents[2]]
    operations = [name for name, _ in seen]
    assert "Scan" not in operations
    queries = [params for name, params in seen if name == "Query"]
    assert len(queries) == 1
    assert queries[0]["IndexName"] == "open_intents"
    # The committed intent's item is gone; only open intents carry the sparse index key.
    item = client.get_item(TableName=unique_name, Key={"pk": {"S": "intent#k0"}}, ConsistentRead=True)["Item"]
    assert item["intent_open"] == {"S": "open"}
    assert "Item" not in client.get_item(TableName=unique_name, Key={"pk": {"S": "intent#k1"}}, ConsistentRead=True)


@pytest.mark.slow  # 120 intents of ~20 KB through moto: several seconds here
def test_dynamodb_open_intents_paginates(aws_env: str, unique_name: str) -> None:
    """Enough ~20 KB intents that the GSI Query needs several 1 MB pages; none may be dropped."""
    create_ledger_table(unique_name)
    ledger = DynamoDbLedger(unique_name)
    files = [f"s3://bucket/landing/2024/03/01/{'x' * 150}-{i:04d}.ndjson" for i in range(120)]
    intents = [_intent(f"k{i:03d}", files, started=T0 + timedelta(seconds=i), batch=i) for i in range(120)]
    for intent in intents:
        ledger.begin(intent)
    assert ledger.open_intents() == intents


class _FlakyBatchGet:
    """A stand-in client whose BatchGetItem leaves keys unprocessed, as DynamoDB does when throttled."""

    def __init__(self, table: str, committed: set[str], stuck_rounds: int) -> None:
        self.table = table
        self.committed = committed
        self.stuck_rounds = stuck_rounds
        self.requests: list[list[str]] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        request = RequestItems[self.table]
        keys = [k["pk"]["S"] for k in request["Keys"]]
        assert len(keys) == len(set(keys)) <= 100
        self.requests.append(keys)
        # Answer only the first key while stuck, leaving the rest unprocessed.
        answered, pending = (keys[:1], keys[1:]) if self.stuck_rounds > 0 else (keys, [])
        self.stuck_rounds -= 1
        unprocessed = {self.table: {**request, "Keys": [{"pk": {"S": k}} for k in pending]}} if pending else {}
        found = [{"pk": {"S": k}} for k in answered if k in self.committed]
        return {"Responses": {self.table: found}, "UnprocessedKeys": unprocessed}


def test_dynamodb_committed_retries_unprocessed_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ddb.time, "sleep", lambda _: None)
    uris = [f"s3://b/{i}" for i in range(250)]
    fake = _FlakyBatchGet("t", {"file#" + u for u in uris[::2]}, stuck_rounds=3)
    ledger = DynamoDbLedger("t", client=fake)
    assert ledger.committed(uris + uris[:10]) == set(uris[::2])
    assert len(fake.requests) == 3 + 3  # chunk 1: 1 + 3 retries; chunks 2 and 3: one call each
    assert fake.requests[1] == fake.requests[0][1:]  # a retry asks again for exactly the unprocessed keys


def test_dynamodb_committed_gives_up_on_keys_that_stay_unprocessed(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(ddb.time, "sleep", sleeps.append)
    fake = _FlakyBatchGet("t", set(), stuck_rounds=10_000)
    ledger = DynamoDbLedger("t", client=fake)
    with pytest.raises(LedgerUnavailable, match=r"^DynamoDB ledger t: BatchGetItem left \d+ keys unprocessed$"):
        ledger.committed([f"s3://b/{i}" for i in range(50)])
    assert len(fake.requests) == 1 + 6  # the first ask and six retries, then it gives up
    assert len(sleeps) == 6
    assert sleeps == sorted(sleeps)  # backoff grows
    assert max(sleeps) <= 0.5  # ... and stays short


class _ThrottlingProxy:
    """An HTTP stand-in for DynamoDB that answers the first `throttles` requests with a throttling error and
    forwards the rest to moto: the real wire format the retry logic reacts to."""

    def __init__(self, upstream: str, throttles: int) -> None:
        import http.server
        import threading
        import urllib.request

        outer = self
        self.requests = 0
        self.left = throttles

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests += 1
                if outer.left > 0:
                    outer.left -= 1
                    payload = json.dumps({
                        "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                        "message": "throttled by the test",
                    }).encode()  # fmt: skip
                    self.send_response(400)
                else:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                    request = urllib.request.Request(upstream, data=body, headers=headers, method="POST")
                    with urllib.request.urlopen(request) as response:
                        payload = response.read()
                    self.send_response(200)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow  # botocore's real backoff sleeps between the throttled attempts: 3-9 s here
def test_dynamodb_throttling_is_retried_by_the_client_with_backoff(
    aws_env: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_ledger_table(unique_name)
    DynamoDbLedger(unique_name).commit("b1", ["file:/x.ndjson"], T0)
    proxy = _ThrottlingProxy(aws_env, throttles=3)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
        ledger = DynamoDbLedger(unique_name)  # the production client: adaptive retry mode, no hand-written loop
        assert ledger.committed(["file:/x.ndjson", "file:/y.ndjson"]) == {"file:/x.ndjson"}
        assert proxy.requests == 4  # three throttled attempts, then the one that went through
    finally:
        proxy.close()
