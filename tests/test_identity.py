"""A file's ledger identity: one canonical URI per object, scoped to its table; older ledgers keep working."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from streaming.ledger import BatchIntent, SqliteLedger
from streaming.ledger.scoped import ScopedLedger, canonical_uri

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("uri", "canonical"),
    [
        ("s3a://bucket/landing/a.json", "s3://bucket/landing/a.json"),
        ("s3n://bucket/landing/a.json", "s3://bucket/landing/a.json"),
        ("s3://bucket/landing/a.json", "s3://bucket/landing/a.json"),
        ("file:/data/a.json", "file:/data/a.json"),
        ("file:///data/a.json", "file:/data/a.json"),
        ("/data/a.json", "file:/data/a.json"),
        ("s3a://bucket/odd key?#%41.json", "s3://bucket/odd key?#%41.json"),  # never unquoted
    ],
)
def test_canonical_uri(uri: str, canonical: str) -> None:
    assert canonical_uri(uri) == canonical


def _ledgers(tmp_path: Path) -> tuple[SqliteLedger, ScopedLedger, ScopedLedger]:
    raw = SqliteLedger(tmp_path / "ledger.sqlite3")
    return raw, ScopedLedger(raw, "s3a://lake/bronze/bronze_encounter"), ScopedLedger(raw, "s3://lake/dev/enc")


def test_both_spellings_of_one_object_are_one_file(tmp_path: Path) -> None:
    _, prod, _ = _ledgers(tmp_path)
    prod.begin(BatchIntent("r-1", "r", 1, ("s3a://land/x.json",), T0))
    prod.commit("r-1", ["s3a://land/x.json"], T0)
    assert prod.committed(["s3://land/x.json", "s3a://land/x.json", "s3a://land/y.json"]) == {
        "s3://land/x.json",
        "s3a://land/x.json",
    }


def test_tables_sharing_a_ledger_neither_skip_nor_recover_each_others_files(tmp_path: Path) -> None:
    _, prod, dev = _ledgers(tmp_path)
    prod.begin(BatchIntent("r-1", "r", 1, ("s3://land/x.json",), T0))
    dev.begin(BatchIntent("r-1", "r", 1, ("s3://land/x.json",), T0))  # same run/batch key, other table
    assert [i.batch_key for i in prod.open_intents()] == ["r-1"]
    prod.commit("r-1", ["s3://land/x.json"], T0)
    assert prod.committed(["s3://land/x.json"]) == {"s3://land/x.json"}
    assert dev.committed(["s3://land/x.json"]) == set()  # dev still takes the file
    assert [(i.batch_key, i.files) for i in dev.open_intents()] == [("r-1", ("s3://land/x.json",))]
    assert prod.open_intents() == []


def test_a_ledger_written_before_scoping_keeps_working(tmp_path: Path) -> None:
    raw, prod, _ = _ledgers(tmp_path)
    # What an older release wrote: raw URIs, unscoped batch keys.
    raw.begin(BatchIntent("old-1", "old", 1, ("s3a://land/a.json",), T0))
    raw.commit("old-1", ["s3a://land/a.json"], T0)
    raw.begin(BatchIntent("old-2", "old", 2, ("s3a://land/b.json",), T0))

    assert prod.committed(["s3a://land/a.json", "s3a://land/b.json"]) == {"s3a://land/a.json"}
    assert [i.batch_key for i in prod.open_intents()] == ["old-2"]  # recovered as before
    prod.commit("old-2", ["s3a://land/b.json"], T0)
    assert prod.open_intents() == [] and raw.open_intents() == []
    assert prod.committed(["s3://land/b.json"]) == {"s3://land/b.json"}


def test_waiting_log_rows_are_per_table_and_an_older_intent_waits_under_its_own_key(tmp_path: Path) -> None:
    raw, prod, dev = _ledgers(tmp_path)
    prod.begin(BatchIntent("p-1", "p", 1, ("s3a://land/p.json",), T0))
    prod.commit("p-1", ["s3a://land/p.json"], T0, summary='{"p": 1}')
    raw.begin(BatchIntent("old-2", "old", 2, ("s3a://land/b.json",), T0))  # before scoping
    assert [i.batch_key for i in prod.open_intents()] == ["old-2"]
    prod.commit("old-2", ["s3a://land/b.json"], T0, summary='{"old": 2}')

    assert [(i.batch_key, summary) for i, summary in prod.unlogged()] == [("old-2", '{"old": 2}'), ("p-1", '{"p": 1}')]
    assert [i.batch_key for i, _ in dev.unlogged()] == ["old-2"]  # an unscoped one is every table's, as before
    prod.logged(["p-1", "old-2"])
    assert prod.unlogged() == [] and raw.unlogged() == [] and raw.open_intents() == []
    assert prod.committed(["s3://land/b.json", "s3://land/p.json"]) == {"s3://land/b.json", "s3://land/p.json"}


def test_versions_and_decisions_are_per_table_and_per_object(tmp_path: Path) -> None:
    raw, prod, dev = _ledgers(tmp_path)
    prod.commit("r-1", ["s3a://land/x.json"], T0, versions={"s3a://land/x.json": "5@t"})
    assert prod.versions(["s3://land/x.json", "s3a://land/x.json"]) == {
        "s3://land/x.json": "5@t",
        "s3a://land/x.json": "5@t",
    }
    assert dev.versions(["s3://land/x.json"]) == {}
    raw.commit("legacy", ["s3://land/old.json"], T0, versions={"s3://land/old.json": "3@t"})  # before scoping
    assert prod.versions(["s3://land/old.json"]) == {"s3://land/old.json": "3@t"}

    prod.decide({"d": "1"})
    assert prod.decisions(["d"]) == {"d": "1"}
    assert dev.decisions(["d"]) == {}
