"""Builders and case tables shared by the reading tests (test_parse, test_bytestream, test_records, test_storage).

Not a test module: the tests import from here, never from each other.
"""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from streaming.bronze import records
from streaming.config import FhirConfig
from streaming.fhir import reasons
from streaming.fhir.bytestream import UTF8_BOM
from streaming.fhir.parse import FileSplitter, Record

LIMITS = FhirConfig(max_file_bytes=1 << 20, max_document_bytes=16 * 1024, max_depth=20, raw_slice_chars=60)


def split(data: bytes, limits: FhirConfig = LIMITS, *, size: int | None = -1) -> list[Record]:
    """All records of `data`; size defaults to len(data), as the file listing would give it."""
    return list(FileSplitter(limits).split(io.BytesIO(data), len(data) if size == -1 else size))


def outline(recs: list[Record]) -> list[tuple[str, str, str | None]]:
    """(kind, position, what): the id of a resource/delete, the type of a skipped one, the reason of a rejection."""
    what = {
        "resource": lambda r: r.resource_id,
        "delete": lambda r: r.resource_id,
        "skipped": lambda r: r.resource_type,
        "quarantine": lambda r: r.reason,
    }
    return [(r.kind, r.position, what[r.kind](r)) for r in recs]


def encounter(eid: str | None, **extra: Any) -> dict[str, Any]:
    """A minimal finished Encounter (id `eid`, left out if None), `extra` fields added or replaced."""
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "period": {"start": "2021-04-16T23:14:15+00:00", "end": "2021-04-16T23:29:15+00:00"},
        "serviceProvider": {"reference": "Organization/o1", "display": "Hospital Ü"},
    }
    if eid is not None:
        resource["id"] = eid
    resource.update(extra)
    return resource


def compact(value: Any) -> str:
    """One-line JSON, non-ASCII kept as UTF-8 (as an NDJSON line is sent)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def ndjson(*values: Any, eol: str = "\n") -> bytes:
    """NDJSON bytes, one line per value; a str value is taken as the line's text as is."""
    return "".join((v if isinstance(v, str) else compact(v)) + eol for v in values).encode()


def deep(levels: int) -> dict[str, Any]:
    """An object nested `levels` objects deep."""
    value: dict[str, Any] = {"v": 1}
    for _ in range(levels - 1):
        value = {"x": value}
    return value


def check_bounded(recs: list[Record], limits: FhirConfig) -> None:
    """Every quarantine record says why (never with the content) and keeps at most raw_slice_chars of the raw text."""
    for rec in recs:
        if rec.kind == "quarantine":
            assert rec.message  # says why, without the content
            assert rec.raw_slice is None or len(rec.raw_slice) <= limits.raw_slice_chars


# -- Bundles -----------------------------------------------------------------------------------------------------
def _post(entry: dict[str, Any]) -> dict[str, str]:
    return {"method": "POST", "url": entry["resource"]["resourceType"]}


def bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A Bundle of `kind`, with the search modes or requests that kind of Bundle carries."""
    if kind == "searchset":
        entries = [{**e, "search": {"mode": "match" if i % 2 else "include"}} for i, e in enumerate(entries)]
    if kind in ("transaction", "batch"):
        entries = [e if "request" in e else {**e, "request": _post(e)} for e in entries]
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


# -- quarantine classes -------------------------------------------------------------------------------------------
GOOD_A, GOOD_B, GOOD_C = (compact(encounter(i)) for i in ("good-a", "good-b", "good-c"))
TRUNCATED_LINE = GOOD_B[:50]
DEEP_ENCOUNTER = compact(encounter("too-deep", extension=[deep(25)]))
PRETTY = json.dumps(encounter("pretty-1"), indent=2, ensure_ascii=False)  # "Ü" as UTF-8 bytes


# name -> (bytes, limits overrides, expected outline): rejects that FHIR structure decides (BYTE_FAULTS below has
# the byte-stream ones); test_parse.py runs them.
FHIR_FAULTS: dict[str, tuple[bytes, dict[str, int], list[tuple[str, str, str | None]]]] = {
    "not-fhir-object": (
        ndjson({"hello": "world"}, GOOD_A),
        {},
        [("quarantine", "line 1", reasons.NOT_FHIR), ("resource", "line 2", "good-a")],
    ),
    "not-fhir-array": (
        b'[\n  {"resourceType": "Encounter", "id": "in-array"}\n]\n',
        {},
        [("quarantine", "file", reasons.NOT_FHIR)],
    ),
    "resource-type-not-string": (ndjson({"resourceType": 7}), {}, [("quarantine", "line 1", reasons.NOT_FHIR)]),
    "bad-entry-inside-bundle": (
        json.dumps(
            bundle(
                "collection",
                [
                    {"resource": encounter("be-0")},
                    {"fullUrl": "urn:uuid:x"},  # no resource
                    {"resource": {"id": "no-type"}},
                    "not an object",
                    {"resource": encounter("be-4")},
                    {"resource": encounter("be-5", extension=[deep(25)])},  # nested too deep
                ],
            ),
            indent=2,
        ).encode(),
        {},
        [
            ("resource", "entry 0", "be-0"),
            ("quarantine", "entry 1", reasons.BAD_BUNDLE_ENTRY),
            ("quarantine", "entry 2", reasons.BAD_BUNDLE_ENTRY),
            ("quarantine", "entry 3", reasons.BAD_BUNDLE_ENTRY),
            ("resource", "entry 4", "be-4"),
            ("quarantine", "entry 5", reasons.TOO_DEEP),
        ],
    ),
    "bundle-entry-not-a-list": (
        b'{"resourceType": "Bundle", "type": "batch", "entry": {"resource": {}}}',
        {},
        [("quarantine", "line 1", reasons.BAD_BUNDLE_ENTRY)],
    ),
    "too-deep-line": (
        ndjson(GOOD_A, DEEP_ENCOUNTER, GOOD_B),
        {},
        [
            ("resource", "line 1", "good-a"),
            ("quarantine", "line 2", reasons.TOO_DEEP),
            ("resource", "line 3", "good-b"),
        ],
    ),
    "too-deep-document": (
        json.dumps(json.loads(DEEP_ENCOUNTER), indent=1).encode(),
        {},
        [("quarantine", "file", reasons.TOO_DEEP)],
    ),
}


def _truncated_gzip() -> bytes:
    whole = gzip.compress(ndjson(*[encounter(f"gz-{i}") for i in range(2000)]))
    return whole[: len(whole) // 2]  # well past the first read buffer: the lines before the cut are read


def _damaged_gzip() -> bytes:
    data = bytearray(gzip.compress(ndjson(encounter("gz-x"))))
    data[-8] ^= 0xFF  # CRC of the trailer no longer matches
    return bytes(data)


# name -> (bytes, limits overrides, expected outline): rejects the byte stream decides (FHIR_FAULTS above has the
# FHIR ones); test_bytestream.py runs them.
BYTE_FAULTS: dict[str, tuple[bytes, dict[str, int], list[tuple[str, str, str | None]] | None]] = {
    "empty": (b"", {}, [("quarantine", "file", reasons.EMPTY_FILE)]),
    "blank-with-bom": (UTF8_BOM + b"\n \r\n\t\n", {}, [("quarantine", "file", reasons.EMPTY_FILE)]),
    "empty-gz": (gzip.compress(b""), {}, [("quarantine", "file", reasons.EMPTY_FILE)]),
    "malformed-pretty": (
        PRETTY.replace('"status"', "status").encode(),
        {},
        [("quarantine", "file", reasons.MALFORMED_JSON)],
    ),
    "truncated-pretty": (PRETTY[: len(PRETTY) // 2].encode(), {}, [("quarantine", "file", reasons.TRUNCATED)]),
    "truncated-pretty-in-string": (
        PRETTY[: PRETTY.index("finished") + 3].encode(),
        {},
        [("quarantine", "file", reasons.TRUNCATED)],
    ),
    "truncated-compact-single": (TRUNCATED_LINE.encode(), {}, [("quarantine", "file", reasons.TRUNCATED)]),
    "truncated-last-line": (
        ndjson(GOOD_A, GOOD_C) + TRUNCATED_LINE.encode(),
        {},
        [
            ("resource", "line 1", "good-a"),
            ("resource", "line 2", "good-c"),
            ("quarantine", "line 3", reasons.TRUNCATED),
        ],
    ),
    "truncated-gz": (
        _truncated_gzip(),
        {},
        None,  # checked separately: some good lines, then one file-level `truncated`
    ),
    # The CRC is checked at the end of the stream, after the line has been read.
    "damaged-gz": (_damaged_gzip(), {}, [("resource", "line 1", "gz-x"), ("quarantine", "file", reasons.TRUNCATED)]),
    "bad-line-inside-ndjson": (
        ndjson(GOOD_A, GOOD_B, '{"resourceType": "Encounter", "id": "bad", }', GOOD_C),
        {},
        [
            ("resource", "line 1", "good-a"),
            ("resource", "line 2", "good-b"),
            ("quarantine", "line 3", reasons.MALFORMED_JSON),
            ("resource", "line 4", "good-c"),
        ],
    ),
    "bad-first-line-ndjson": (
        ndjson("this is not json", GOOD_A, GOOD_B),
        {},
        [
            ("quarantine", "line 1", reasons.MALFORMED_JSON),
            ("resource", "line 2", "good-a"),
            ("resource", "line 3", "good-b"),
        ],
    ),
    # Larger than max_document_bytes (16 KiB here): still read line by line, not as one oversized document.
    "bad-first-line-large-ndjson": (
        ndjson("{not json", *[encounter(f"l-{i}") for i in range(100)]),
        {},
        [
            ("quarantine", "line 1", reasons.MALFORMED_JSON),
            *[("resource", f"line {i + 2}", f"l-{i}") for i in range(100)],
        ],
    ),
    "two-bad-first-lines-ndjson": (
        ndjson(TRUNCATED_LINE, "{oops", GOOD_A),
        {},
        [
            ("quarantine", "line 1", reasons.TRUNCATED),
            ("quarantine", "line 2", reasons.MALFORMED_JSON),
            ("resource", "line 3", "good-a"),
        ],
    ),
    "invalid-utf8-line": (
        ndjson(GOOD_A) + b'{"resourceType": "Encounter", "id": "x\xff\xfe"}\n' + ndjson(GOOD_B),
        {},
        [
            ("resource", "line 1", "good-a"),
            ("quarantine", "line 2", reasons.INVALID_UTF8),
            ("resource", "line 3", "good-b"),
        ],
    ),
    "invalid-utf8-document": (
        PRETTY.replace("finished", "fin\udcffished").encode("utf-8", "surrogateescape"),
        {},
        [("quarantine", "file", reasons.INVALID_UTF8)],
    ),
    "latin1-document": (
        PRETTY.replace("Ü", "\u00dc").encode("latin-1"),
        {},
        [("quarantine", "file", reasons.INVALID_UTF8)],
    ),
    "file-too-large": (
        ndjson(GOOD_A, GOOD_B),
        {"max_file_bytes": 300},
        [("quarantine", "file", reasons.FILE_TOO_LARGE)],
    ),
    "gzip-bomb": (
        gzip.compress(ndjson(*[encounter(f"bomb-{i}") for i in range(50)])),
        {"max_file_bytes": 4096},
        None,  # checked separately: the lines before the limit, then `file_too_large`
    ),
    "line-too-large": (
        ndjson(GOOD_A, encounter("big", text="x" * 20_000), GOOD_B),
        {},
        [
            ("resource", "line 1", "good-a"),
            ("quarantine", "line 2", reasons.RECORD_TOO_LARGE),
            ("resource", "line 3", "good-b"),
        ],
    ),
    "document-too-large": (
        json.dumps(encounter("big", text="x" * 20_000), indent=2).encode(),
        {},
        [("quarantine", "file", reasons.RECORD_TOO_LARGE)],
    ),
    "deeper-than-python-recursion": (
        ndjson(GOOD_A) + b'{"resourceType": "Encounter", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
        {"max_document_bytes": 1 << 20},
        [("resource", "line 1", "good-a"), ("quarantine", "line 2", reasons.TOO_DEEP)],
    ),
    "number-too-long": (
        ndjson('{"resourceType": "Encounter", "id": "n", "length": {"value": ' + "9" * 5000 + "}}", GOOD_A),
        {},
        [("quarantine", "line 1", reasons.MALFORMED_JSON), ("resource", "line 2", "good-a")],
    ),
}


# -- the executor side --------------------------------------------------------------------------------------------
def run_files(paths: list[str], limits: FhirConfig = LIMITS, length: int = 10) -> list[dict[str, Any]]:
    """Rows split_files gives for `paths` (each listed with `length` bytes), as a Spark task would produce them."""
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    listing = pa.RecordBatch.from_pylist(
        [{"uri": p, "length": length, "modified": now} for p in paths],
        schema=pa.schema([("uri", pa.string()), ("length", pa.int64()), ("modified", pa.timestamp("us", tz="UTC"))]),
    )
    return pa.Table.from_batches(list(records.split_files(limits, iter([listing])))).to_pylist()
