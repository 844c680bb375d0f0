"""What the landed input should produce, computed from the files on disk alone (never from the job's output)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def file_uri(path: Path) -> str:
    """A local file as Spark's file source names it (and so the ingest log, the ledger and `sourcename`)."""
    return f"file:{path.resolve()}"


@dataclass(frozen=True)
class InputRecord:
    """One record of an input file as the test wrote it: valid Encounter or a record that must be quarantined."""

    uri: str
    position: str
    encounter_id: str | None
    last_updated: datetime | None
    deleted: bool = False  # a Bundle's DELETE entry; last_updated is its Bundle's timestamp

    @property
    def valid(self) -> bool:
        return self.encounter_id is not None and self.last_updated is not None


@dataclass(frozen=True)
class Expected:
    """What the tables must hold after every file was ingested exactly once, computed from the files."""

    files: frozenset[str]
    records: tuple[InputRecord, ...]

    @property
    def valid(self) -> list[InputRecord]:
        """The valid Encounter versions (what rows_written and rows_stale count)."""
        return [r for r in self.records if r.valid and not r.deleted]

    @property
    def deletes(self) -> list[InputRecord]:
        return [r for r in self.records if r.deleted]

    @property
    def invalid(self) -> list[InputRecord]:
        return [r for r in self.records if not r.valid]

    @property
    def newest(self) -> dict[str, tuple[str, str]]:
        """encounter id -> (file, position) of its version (or DELETE: its tombstone) with the newest time."""
        best: dict[str, InputRecord] = {}
        for rec in self.valid + self.deletes:
            assert rec.encounter_id is not None and rec.last_updated is not None
            current = best.get(rec.encounter_id)
            if current is not None and current.last_updated == rec.last_updated:
                raise AssertionError(f"test input is ambiguous: two versions of {rec.encounter_id} tie")
            if current is None or rec.last_updated > current.last_updated:  # type: ignore[operator]
                best[rec.encounter_id] = rec
        return {i: (r.uri, r.position) for i, r in best.items()}

    @property
    def deleted(self) -> set[str]:
        """The encounter ids whose newest record is a DELETE: bronze holds their tombstones."""
        newest = self.newest
        return {
            r.encounter_id for r in self.deletes if r.encounter_id and newest[r.encounter_id] == (r.uri, r.position)
        }


def _classify(text: str, uri: str, position: str) -> InputRecord:
    """A valid Encounter has an id that is a FHIR id and a meta.lastUpdated; anything else is a bad record."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return InputRecord(uri, position, None, None)
    if not isinstance(value, dict) or value.get("resourceType") != "Encounter":
        return InputRecord(uri, position, None, None)
    rid = value.get("id")
    updated = (value.get("meta") or {}).get("lastUpdated")
    if not (isinstance(rid, str) and FHIR_ID.match(rid) and isinstance(updated, str)):
        return InputRecord(uri, position, None, None)
    return InputRecord(uri, position, rid, datetime.fromisoformat(updated))


def _deletes(text: str, uri: str) -> list[InputRecord] | None:
    """A transaction Bundle of DELETE entries (Landing.deletes): one record per entry (`entry N`, 0-based), its
    time the Bundle's timestamp; None for any other file."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not (isinstance(value, dict) and value.get("resourceType") == "Bundle"):
        return None
    requests = [e.get("request") or {} for e in value.get("entry") or []]
    if not requests or any(r.get("method") != "DELETE" for r in requests):  # the harness lands no other Bundle yet
        raise AssertionError(f"{uri}: only DELETE Bundles (Landing.deletes) have expectations here")
    at = datetime.fromisoformat(value["timestamp"])
    return [InputRecord(uri, f"entry {n}", r["url"].split("/", 1)[1], at, True) for n, r in enumerate(requests)]


def scan(path: Path) -> list[InputRecord]:
    """The records of one input file: NDJSON line by line (`line N`, 1-based), a delete Bundle by entry, any other
    file whole (`file`)."""
    text = path.read_text(encoding="utf-8")
    uri = file_uri(path)
    if path.suffix == ".ndjson":
        return [_classify(line, uri, f"line {n}") for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    return _deletes(text, uri) or [_classify(text, uri, "file")]


def expected(files: list[Path]) -> Expected:
    """What ingesting `files` exactly once must produce."""
    return Expected(frozenset(file_uri(p) for p in files), tuple(r for path in files for r in scan(path)))
