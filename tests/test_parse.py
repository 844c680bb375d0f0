"""FileSplitter on in-memory bytes (no Spark): every file shape, Bundle references, deletes, each quarantine class.

Expected records are built from the inputs each test writes; positions are `line N` (1-based, blank lines
counted), `entry N` (0-based index in Bundle.entry), `line N entry M` or `file`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import random
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from streaming import parse, records, storage
from streaming.config import FhirConfig
from streaming.parse import FileSplitter, Record

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
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def ndjson(*values: Any, eol: str = "\n") -> bytes:
    return "".join((v if isinstance(v, str) else compact(v)) + eol for v in values).encode()


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"v": 1}
    for _ in range(levels - 1):
        value = {"x": value}
    return value


# -- single resources --------------------------------------------------------------------------------------------
SINGLE = encounter("enc-1", subject={"reference": "Patient/p1"})
SINGLE_SHAPES: dict[str, tuple[bytes, str]] = {
    "compact": (compact(SINGLE).encode(), "line 1"),  # one-line NDJSON, as the README says
    "compact-no-newline-bom": (parse.UTF8_BOM + compact(SINGLE).encode(), "line 1"),
    "compact-bom-newline": (parse.UTF8_BOM + compact(SINGLE).encode() + b"\r\n", "line 1"),
    "pretty": (json.dumps(SINGLE, indent=2).encode(), "file"),
    "pretty-bom-crlf": (parse.UTF8_BOM + json.dumps(SINGLE, indent=4).replace("\n", "\r\n").encode(), "file"),
    "pretty-leading-blank-lines": (b"\n\n  \n" + json.dumps(SINGLE, indent=1).encode() + b"\n\n", "file"),
    "pretty-first-line-has-key": (b'{"resourceType": "Encounter",\n' + compact(SINGLE)[1:].encode(), "file"),
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("shape", sorted(SINGLE_SHAPES))
def test_single_resource_shapes(shape: str, gz: bool) -> None:
    data, position = SINGLE_SHAPES[shape]
    recs = split(gzip.compress(data) if gz else data)
    assert outline(recs) == [("resource", position, "enc-1")]
    assert json.loads(recs[0].resource_json) == SINGLE
    assert recs[0].ref_map == {} and recs[0].ref_names == {}  # no Bundle: nothing to resolve


# -- Bundles -----------------------------------------------------------------------------------------------------
def _post(entry: dict[str, Any]) -> dict[str, str]:
    return {"method": "POST", "url": entry["resource"]["resourceType"]}


def bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    if kind == "searchset":
        entries = [{**e, "search": {"mode": "match" if i % 2 else "include"}} for i, e in enumerate(entries)]
    if kind in ("transaction", "batch"):
        entries = [e if "request" in e else {**e, "request": _post(e)} for e in entries]
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def synthea_like_entries() -> list[dict[str, Any]]:
    """A Synthea-style patient Bundle: urn:uuid references, conditional practitioner/organization references."""
    pid, oid = "7f3c1a2e-0000-4000-8000-000000000001", "org-1"
    enc_a = encounter(
        "enc-a",
        subject={"reference": f"urn:uuid:{pid}", "display": "Mr. A"},
        participant=[{"individual": {"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|999"}}],
        serviceProvider={"reference": f"urn:uuid:{oid}"},  # no display: the Organization's name is the fallback
        location=[{"location": {"reference": "urn:uuid:loc-1"}}],
    )
    enc_b = encounter(
        "enc-b",
        subject={"reference": f"urn:uuid:{pid}"},
        serviceProvider={"reference": "Organization?identifier=https://github.com/synthetichealth/synthea|h2"},
    )
    return [
        {"fullUrl": f"urn:uuid:{pid}", "resource": {"resourceType": "Patient", "id": pid}},
        {"fullUrl": f"urn:uuid:{oid}", "resource": {"resourceType": "Organization", "id": oid, "name": "General"}},
        {"fullUrl": "urn:uuid:loc-1", "resource": {"resourceType": "Location", "name": "Ward 3"}},  # no id
        {"fullUrl": "urn:uuid:enc-a", "resource": enc_a},
        {"fullUrl": "urn:uuid:obs-1", "resource": {"resourceType": "Observation", "id": "obs-1"}},
        {"fullUrl": "urn:uuid:enc-b", "resource": enc_b},
        {
            "fullUrl": "urn:uuid:h2",
            "resource": {"resourceType": "Organization", "name": "Second Hospital"},
            "request": {
                "method": "POST",
                "url": "Organization",
                "ifNoneExist": "identifier=https://github.com/synthetichealth/synthea|h2",
            },
        },
    ]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("pretty", [False, True], ids=["compact", "pretty"])
@pytest.mark.parametrize("kind", ["transaction", "batch", "collection", "searchset"])
def test_bundle_of_each_type_yields_its_encounters_and_skips_the_rest(kind: str, pretty: bool, gz: bool) -> None:
    value = bundle(kind, synthea_like_entries())
    data = (json.dumps(value, indent=2) if pretty else compact(value)).encode()
    recs = split(gzip.compress(data) if gz else data)

    # A compact Bundle file is one-line NDJSON, so its entries sit in line 1.
    pos = "" if pretty else "line 1 "
    assert outline(recs) == [
        ("skipped", f"{pos}entry 0", "Patient"),
        ("skipped", f"{pos}entry 1", "Organization"),
        ("skipped", f"{pos}entry 2", "Location"),
        ("resource", f"{pos}entry 3", "enc-a"),
        ("skipped", f"{pos}entry 4", "Observation"),
        ("resource", f"{pos}entry 5", "enc-b"),
        ("skipped", f"{pos}entry 6", "Organization"),
    ]
    enc_a, enc_b = recs[3], recs[5]
    assert json.loads(enc_a.resource_json) == value["entry"][3]["resource"]
    pid = "7f3c1a2e-0000-4000-8000-000000000001"
    # urn:uuid resolves through fullUrl to Type/id; the conditional Practitioner reference is left alone.
    assert enc_a.ref_map == {f"urn:uuid:{pid}": f"Patient/{pid}", "urn:uuid:org-1": "Organization/org-1"}
    assert enc_a.ref_names == {"urn:uuid:org-1": "General", "urn:uuid:loc-1": "Ward 3"}
    conditional = "Organization?identifier=https://github.com/synthetichealth/synthea|h2"
    assert enc_b.ref_map == {f"urn:uuid:{pid}": f"Patient/{pid}"}
    # A conditional reference stays as sent, but the Organization a conditional create describes names it.
    assert enc_b.ref_names == {conditional: "Second Hospital"}


def test_bundle_references_by_absolute_and_relative_url() -> None:
    entries = [
        {"fullUrl": "http://x.org/fhir/Patient/p9", "resource": {"resourceType": "Patient", "id": "p9"}},
        {
            "fullUrl": "http://x.org/fhir/Organization/o9",
            "resource": {"resourceType": "Organization", "id": "o9", "name": "Nine"},
        },
        {
            "fullUrl": "http://x.org/fhir/Encounter/e9",
            "resource": encounter(
                "e9",
                subject={"reference": "http://x.org/fhir/Patient/p9"},
                serviceProvider={"reference": "Organization/o9"},
                participant=[{"individual": {"reference": "Practitioner/elsewhere"}}],
            ),
        },
    ]
    (rec,) = [r for r in split(compact(bundle("collection", entries)).encode()) if r.kind == "resource"]
    assert rec.ref_map == {"http://x.org/fhir/Patient/p9": "Patient/p9"}
    assert rec.ref_names == {"Organization/o9": "Nine"}  # relative reference to an entry: name through Type/id


def test_ndjson_with_blank_lines_crlf_and_other_types() -> None:
    lines = [
        compact(encounter("a")),
        "",
        compact(encounter("b")) + "\r",
        "   \t",
        compact({"resourceType": "Patient", "id": "p1"}),
        compact(encounter("c")),
    ]
    data = ("\n".join(lines) + "\r\n").encode()
    expected = [
        ("resource", "line 1", "a"),
        ("resource", "line 3", "b"),
        ("skipped", "line 5", "Patient"),
        ("resource", "line 6", "c"),
    ]
    assert outline(split(data)) == expected
    assert outline(split(gzip.compress(data))) == expected
    assert outline(split(parse.UTF8_BOM + data)) == expected
    # The NDJSON line is kept exactly as sent (no re-serialisation).
    assert split(data)[1].resource_json == compact(encounter("b"))


def test_bulk_export_patient_file_is_only_skipped() -> None:
    data = ndjson(*({"resourceType": "Patient", "id": f"p{i}"} for i in range(4)))
    assert outline(split(data)) == [("skipped", f"line {i}", "Patient") for i in range(1, 5)]


def test_ndjson_of_bundles_positions_name_line_and_entry() -> None:
    first = bundle("collection", [{"resource": encounter("x1")}, {"resource": {"resourceType": "Condition"}}])
    second = bundle("searchset", [{"resource": {"resourceType": "Patient"}}, {"resource": encounter("x2")}, {}])
    data = ndjson(first, encounter("x0"), second)
    assert outline(split(gzip.compress(data))) == [
        ("resource", "line 1 entry 0", "x1"),
        ("skipped", "line 1 entry 1", "Condition"),
        ("resource", "line 2", "x0"),
        ("skipped", "line 3 entry 0", "Patient"),
        ("resource", "line 3 entry 1", "x2"),
        ("quarantine", "line 3 entry 2", parse.BAD_BUNDLE_ENTRY),
    ]


def test_bundle_inside_bundle() -> None:
    inner = bundle("collection", [{"resource": encounter("in-1")}])
    outer = bundle("batch", [{"resource": inner}, {"resource": encounter("out-1")}])
    assert outline(split(json.dumps(outer, indent=1).encode())) == [
        ("resource", "entry 0 entry 0", "in-1"),
        ("resource", "entry 1", "out-1"),
    ]


def test_delete_entries() -> None:
    entries = [
        {"resource": encounter("keep-1"), "request": {"method": "PUT", "url": "Encounter/keep-1"}},
        {"request": {"method": "DELETE", "url": "Encounter/gone-1"}},
        {"request": {"method": "delete", "url": "http://x.org/fhir/Encounter/gone-2/_history/3"}},
        {"request": {"method": "DELETE", "url": "Patient/p1"}},
        {"request": {"method": "DELETE", "url": "Encounter?identifier=http://x|42"}},  # conditional: no id known
        {"request": {"method": "DELETE", "url": "Encounter/not a valid id!"}},
    ]
    recs = split(json.dumps(bundle("transaction", entries), indent=2).encode())
    assert outline(recs) == [
        ("resource", "entry 0", "keep-1"),
        ("delete", "entry 1", "gone-1"),
        ("delete", "entry 2", "gone-2"),
        ("skipped", "entry 3", "Patient"),
        ("quarantine", "entry 4", parse.BAD_BUNDLE_ENTRY),
        ("quarantine", "entry 5", parse.BAD_BUNDLE_ENTRY),
    ]
    assert recs[1].resource_type == "Encounter" and recs[1].resource_json is None


# -- quarantine classes ------------------------------------------------------------------------------------------
GOOD_A, GOOD_B, GOOD_C = (compact(encounter(i)) for i in ("good-a", "good-b", "good-c"))
TRUNCATED_LINE = GOOD_B[:50]
DEEP_ENCOUNTER = compact(encounter("too-deep", extension=[deep(25)]))
PRETTY = json.dumps(encounter("pretty-1"), indent=2, ensure_ascii=False)  # "Ü" as UTF-8 bytes


def _truncated_gzip() -> bytes:
    whole = gzip.compress(ndjson(*[encounter(f"gz-{i}") for i in range(2000)]))
    return whole[: len(whole) // 2]  # well past the first read buffer: the lines before the cut are read


def _small_truncated_gzip() -> tuple[bytes, int]:
    """A gzip far smaller than one read buffer, cut in half; returns it and how many whole lines it still holds."""
    lines = [encounter(f"gz-{i}", text=hashlib.sha512(b"%d" % i).hexdigest()) for i in range(20)]
    whole = gzip.compress(ndjson(*lines))
    cut = whole[: len(whole) // 2]
    return cut, zlib.decompressobj(31).decompress(cut).count(b"\n")


def test_small_truncated_gzip_keeps_every_whole_line() -> None:
    data, whole_lines = _small_truncated_gzip()
    assert 2 < whole_lines < 20 and len(data) < 8192
    assert outline(split(data)) == [
        *[("resource", f"line {i + 1}", f"gz-{i}") for i in range(whole_lines)],
        ("quarantine", "file", parse.TRUNCATED),
    ]


def _damaged_gzip() -> bytes:
    data = bytearray(gzip.compress(ndjson(encounter("gz-x"))))
    data[-8] ^= 0xFF  # CRC of the trailer no longer matches
    return bytes(data)


# name -> (bytes, limits overrides, expected outline)
BAD_FILES: dict[str, tuple[bytes, dict[str, int], list[tuple[str, str, str | None]]]] = {
    "empty": (b"", {}, [("quarantine", "file", parse.EMPTY_FILE)]),
    "blank-with-bom": (parse.UTF8_BOM + b"\n \r\n\t\n", {}, [("quarantine", "file", parse.EMPTY_FILE)]),
    "empty-gz": (gzip.compress(b""), {}, [("quarantine", "file", parse.EMPTY_FILE)]),
    "malformed-pretty": (
        PRETTY.replace('"status"', "status").encode(),
        {},
        [("quarantine", "file", parse.MALFORMED_JSON)],
    ),
    "truncated-pretty": (PRETTY[: len(PRETTY) // 2].encode(), {}, [("quarantine", "file", parse.TRUNCATED)]),
    "truncated-pretty-in-string": (
        PRETTY[: PRETTY.index("finished") + 3].encode(),
        {},
        [("quarantine", "file", parse.TRUNCATED)],
    ),
    "truncated-compact-single": (TRUNCATED_LINE.encode(), {}, [("quarantine", "file", parse.TRUNCATED)]),
    "truncated-last-line": (
        ndjson(GOOD_A, GOOD_C) + TRUNCATED_LINE.encode(),
        {},
        [("resource", "line 1", "good-a"), ("resource", "line 2", "good-c"), ("quarantine", "line 3", parse.TRUNCATED)],
    ),
    "truncated-gz": (
        _truncated_gzip(),
        {},
        None,  # checked separately: some good lines, then one file-level `truncated`
    ),
    # The CRC is checked at the end of the stream, after the line has been read.
    "damaged-gz": (_damaged_gzip(), {}, [("resource", "line 1", "gz-x"), ("quarantine", "file", parse.TRUNCATED)]),
    "not-fhir-object": (
        ndjson({"hello": "world"}, GOOD_A),
        {},
        [("quarantine", "line 1", parse.NOT_FHIR), ("resource", "line 2", "good-a")],
    ),
    "not-fhir-array": (
        b'[\n  {"resourceType": "Encounter", "id": "in-array"}\n]\n',
        {},
        [("quarantine", "file", parse.NOT_FHIR)],
    ),
    "resource-type-not-string": (ndjson({"resourceType": 7}), {}, [("quarantine", "line 1", parse.NOT_FHIR)]),
    "bad-line-inside-ndjson": (
        ndjson(GOOD_A, GOOD_B, '{"resourceType": "Encounter", "id": "bad", }', GOOD_C),
        {},
        [
            ("resource", "line 1", "good-a"),
            ("resource", "line 2", "good-b"),
            ("quarantine", "line 3", parse.MALFORMED_JSON),
            ("resource", "line 4", "good-c"),
        ],
    ),
    "bad-first-line-ndjson": (
        ndjson("this is not json", GOOD_A, GOOD_B),
        {},
        [
            ("quarantine", "line 1", parse.MALFORMED_JSON),
            ("resource", "line 2", "good-a"),
            ("resource", "line 3", "good-b"),
        ],
    ),
    # Larger than max_document_bytes (16 KiB here): still read line by line, not as one oversized document.
    "bad-first-line-large-ndjson": (
        ndjson("{not json", *[encounter(f"l-{i}") for i in range(100)]),
        {},
        [
            ("quarantine", "line 1", parse.MALFORMED_JSON),
            *[("resource", f"line {i + 2}", f"l-{i}") for i in range(100)],
        ],
    ),
    "two-bad-first-lines-ndjson": (
        ndjson(TRUNCATED_LINE, "{oops", GOOD_A),
        {},
        [
            ("quarantine", "line 1", parse.TRUNCATED),
            ("quarantine", "line 2", parse.MALFORMED_JSON),
            ("resource", "line 3", "good-a"),
        ],
    ),
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
            ("quarantine", "entry 1", parse.BAD_BUNDLE_ENTRY),
            ("quarantine", "entry 2", parse.BAD_BUNDLE_ENTRY),
            ("quarantine", "entry 3", parse.BAD_BUNDLE_ENTRY),
            ("resource", "entry 4", "be-4"),
            ("quarantine", "entry 5", parse.TOO_DEEP),
        ],
    ),
    "bundle-entry-not-a-list": (
        b'{"resourceType": "Bundle", "type": "batch", "entry": {"resource": {}}}',
        {},
        [("quarantine", "line 1", parse.BAD_BUNDLE_ENTRY)],
    ),
    "invalid-utf8-line": (
        ndjson(GOOD_A) + b'{"resourceType": "Encounter", "id": "x\xff\xfe"}\n' + ndjson(GOOD_B),
        {},
        [
            ("resource", "line 1", "good-a"),
            ("quarantine", "line 2", parse.INVALID_UTF8),
            ("resource", "line 3", "good-b"),
        ],
    ),
    "invalid-utf8-document": (
        PRETTY.replace("finished", "fin\udcffished").encode("utf-8", "surrogateescape"),
        {},
        [("quarantine", "file", parse.INVALID_UTF8)],
    ),
    "latin1-document": (
        PRETTY.replace("Ü", "\u00dc").encode("latin-1"),
        {},
        [("quarantine", "file", parse.INVALID_UTF8)],
    ),
    "file-too-large": (ndjson(GOOD_A, GOOD_B), {"max_file_bytes": 300}, [("quarantine", "file", parse.FILE_TOO_LARGE)]),
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
            ("quarantine", "line 2", parse.RECORD_TOO_LARGE),
            ("resource", "line 3", "good-b"),
        ],
    ),
    "document-too-large": (
        json.dumps(encounter("big", text="x" * 20_000), indent=2).encode(),
        {},
        [("quarantine", "file", parse.RECORD_TOO_LARGE)],
    ),
    "too-deep-line": (
        ndjson(GOOD_A, DEEP_ENCOUNTER, GOOD_B),
        {},
        [("resource", "line 1", "good-a"), ("quarantine", "line 2", parse.TOO_DEEP), ("resource", "line 3", "good-b")],
    ),
    "too-deep-document": (
        json.dumps(json.loads(DEEP_ENCOUNTER), indent=1).encode(),
        {},
        [("quarantine", "file", parse.TOO_DEEP)],
    ),
    "deeper-than-python-recursion": (
        ndjson(GOOD_A) + b'{"resourceType": "Encounter", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
        {"max_document_bytes": 1 << 20},
        [("resource", "line 1", "good-a"), ("quarantine", "line 2", parse.TOO_DEEP)],
    ),
    "number-too-long": (
        ndjson('{"resourceType": "Encounter", "id": "n", "length": {"value": ' + "9" * 5000 + "}}", GOOD_A),
        {},
        [("quarantine", "line 1", parse.MALFORMED_JSON), ("resource", "line 2", "good-a")],
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_quarantine_classes(name: str) -> None:
    data, overrides, expected = BAD_FILES[name]
    limits = FhirConfig(**{**LIMITS.__dict__, **overrides})
    recs = split(data, limits)
    if expected is not None:
        assert outline(recs) == expected
    else:  # reading stopped part-way: the records before that point stay, one file-level record says why
        *good, last = outline(recs)
        prefix = "gz-" if name == "truncated-gz" else "bomb-"
        assert 0 < len(good) < (2000 if name == "truncated-gz" else 50)
        assert good == [("resource", f"line {i + 1}", f"{prefix}{i}") for i in range(len(good))]
        assert last == ("quarantine", "file", parse.TRUNCATED if name == "truncated-gz" else parse.FILE_TOO_LARGE)
    for rec in recs:
        if rec.kind == "quarantine":
            assert rec.message  # says why, without the content
            assert rec.raw_slice is None or len(rec.raw_slice) <= limits.raw_slice_chars


def test_quarantine_keeps_a_bounded_slice_of_the_raw_text() -> None:
    bad = '{"resourceType": "Encounter", "id": "bad", "note": "' + "z" * 500 + '", }'
    recs = split(ndjson(GOOD_A, bad), FhirConfig(raw_slice_chars=40))
    assert outline(recs)[1] == ("quarantine", "line 2", parse.MALFORMED_JSON)
    assert recs[1].raw_slice == bad[:40]
    assert "z" * 10 not in (recs[1].message or "")  # the message never carries the record's content

    recs = split(b'{"id": "a\xff' + b"y" * 500 + b'"}\n', FhirConfig(raw_slice_chars=30))
    assert outline(recs) == [("quarantine", "line 1", parse.INVALID_UTF8)]
    assert recs[0].raw_slice == '{"id": "a\ufffd' + "y" * 20


def test_file_over_the_limit_without_a_known_size_is_caught_while_reading() -> None:
    data = ndjson(*[encounter(f"s-{i}") for i in range(20)])
    recs = split(data, FhirConfig(max_file_bytes=len(data) - 1), size=None)
    assert outline(recs)[-1] == ("quarantine", "file", parse.FILE_TOO_LARGE)
    assert outline(split(data, FhirConfig(max_file_bytes=len(data)), size=None))[-1] == ("resource", "line 20", "s-19")


def test_encounters_without_or_with_a_bad_id_pass_through_for_flatten_to_reject() -> None:
    """Record-level checks (missing_id, invalid_id, bad_datetime) belong to flatten.py, on the kept JSON."""
    recs = split(ndjson(encounter(None), encounter("not valid!"), encounter("ok", period={"start": "yesterday"})))
    assert outline(recs) == [
        ("resource", "line 1", None),
        ("resource", "line 2", "not valid!"),
        ("resource", "line 3", "ok"),
    ]
    assert json.loads(recs[2].resource_json)["period"] == {"start": "yesterday"}


def test_lone_surrogate_escapes_stay_encodable() -> None:
    odd = encounter("s-1", note="\ud800 alone", serviceProvider={"reference": "urn:uuid:o\udfff"})
    entries = [
        {"fullUrl": "urn:uuid:o\udfff", "resource": {"resourceType": "Organization", "id": "o1", "name": "N\ud83d"}},
        {"resource": odd},
        {"resource": {"resourceType": "Weird\udc00"}},
        {"resource": encounter("bad\ud800id")},
    ]
    data = json.dumps(bundle("collection", entries)).encode()  # ASCII: the surrogates are \u escapes
    recs = split(data)
    assert outline(recs)[1] == ("resource", "line 1 entry 1", "s-1")
    assert json.loads(recs[1].resource_json) == odd  # same JSON value, surrogates kept as escapes
    assert recs[2].kind == "skipped" and recs[3].kind == "resource"
    for rec in recs:
        texts = [rec.resource_type, rec.resource_id, rec.resource_json, rec.raw_slice]
        texts += [*rec.ref_map.keys(), *rec.ref_map.values(), *rec.ref_names.keys(), *rec.ref_names.values()]
        for text in filter(None, texts):
            text.encode("utf-8")  # raises if a lone surrogate were left


# -- bounded memory ------------------------------------------------------------------------------------------------
class GeneratedStream(io.RawIOBase):
    """A read-only stream whose bytes come from a generator: nothing is held beyond the current chunk."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""
        self.consumed = 0
        self.exhausted = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            nxt = next(self._chunks, None)
            if nxt is None:
                self.exhausted = True
                return 0
            self._pending = nxt
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.consumed += n
        return n


LINES = 200_000


def ndjson_chunks(lines: int) -> Iterator[bytes]:
    batch: list[bytes] = []
    for i in range(lines):
        batch.append(b'{"resourceType":"Encounter","id":"m-%d","status":"finished"}\n' % i)
        if len(batch) == 100:
            yield b"".join(batch)
            batch = []
    if batch:
        yield b"".join(batch)


def gzip_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: gzip container
    for chunk in chunks:
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_ndjson_is_split_lazily_with_bounded_memory(gz: bool) -> None:
    stream = GeneratedStream(gzip_chunks(ndjson_chunks(LINES)) if gz else ndjson_chunks(LINES))
    total = LINES * 56  # bytes of the whole (uncompressed) file, never materialised
    records_iter = FileSplitter(FhirConfig()).split(stream, size=None)

    first = list(itertools.islice(records_iter, 5))
    assert outline(first) == [("resource", f"line {i + 1}", f"m-{i}") for i in range(5)]
    assert not stream.exhausted
    assert stream.consumed <= 256 * 1024 < total // 20  # a small prefix: the read buffers, not the file

    count, last_id = 5, None
    for rec in records_iter:  # the rest, one at a time (never a list)
        count += 1
        last_id = rec.resource_id
    assert (count, last_id) == (LINES, f"m-{LINES - 1}")
    assert stream.exhausted


# -- robustness: no input makes the splitter raise ----------------------------------------------------------------
def _seeds() -> list[bytes]:
    return [
        ndjson(GOOD_A, encounter("f-1", subject={"reference": "urn:uuid:p"}), GOOD_B),
        json.dumps(bundle("transaction", synthea_like_entries()), indent=2).encode(),
        compact(bundle("collection", synthea_like_entries())).encode(),
        parse.UTF8_BOM + PRETTY.encode(),
    ]


def _mutations(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op, at = rng.randrange(4), rng.randrange(max(len(buf), 1))
        if op == 0:
            buf[at : at + 1] = bytes([rng.randrange(256)])
        elif op == 1:
            del buf[at : at + rng.randint(1, 40)]
        elif op == 2:
            buf[at:at] = rng.choice([b"{", b"[", b"]", b"}", b'"', b"\n", b"\\ud800", b"\xff", b"\x00", b"1e999"])
        else:
            buf = buf[:at]
    return bytes(buf)


def test_mutated_input_never_raises_and_always_converts_to_arrow(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    limits = FhirConfig(max_depth=12, max_document_bytes=64 * 1024, raw_slice_chars=100)
    files = []
    for i in range(400):
        seed = rng.choice(_seeds())
        data = _mutations(seed, rng)
        if rng.random() < 0.25:
            data = gzip.compress(data)
            data = _mutations(data, rng) if rng.random() < 0.3 else data
        path = tmp_path / f"f{i}.json"
        path.write_bytes(data)
        files.append(path)
        recs = split(data, limits)
        assert recs, "every file yields at least one record"
        assert {r.kind for r in recs} <= {"resource", "delete", "skipped", "quarantine"}
        assert all(r.reason for r in recs if r.kind == "quarantine")

    # The same files through the executor-side code, to Arrow, as Spark would run it.
    now = datetime(2024, 1, 1, tzinfo=UTC)
    listing = pa.RecordBatch.from_pylist(
        [{"uri": f"file:{p}", "length": p.stat().st_size, "modified": now} for p in files],
        schema=pa.schema([("uri", pa.string()), ("length", pa.int64()), ("modified", pa.timestamp("us", tz="UTC"))]),
    )
    out = pa.Table.from_batches(list(records.split_files(limits, iter([listing]))))
    assert out.num_rows >= len(files)
    assert set(out.column("sourcename").to_pylist()) == {f"file:{p}" for p in files}


# -- executor side (records.py) and storage ----------------------------------------------------------------------
def _run_files(paths: list[str], limits: FhirConfig = LIMITS) -> list[dict[str, Any]]:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    listing = pa.RecordBatch.from_pylist(
        [{"uri": p, "length": 10, "modified": now} for p in paths],
        schema=pa.schema([("uri", pa.string()), ("length", pa.int64()), ("modified", pa.timestamp("us", tz="UTC"))]),
    )
    return pa.Table.from_batches(list(records.split_files(limits, iter([listing])))).to_pylist()


def test_vanished_file_is_quarantined_as_unreadable(tmp_path: Path) -> None:
    good = tmp_path / "good.ndjson"
    good.write_bytes(ndjson(GOOD_A))
    rows = _run_files([f"file:{tmp_path / 'gone.json'}", f"file:{good}"])
    assert [(r["sourcename"], r["kind"], r["position"], r["reason"]) for r in rows] == [
        (f"file:{tmp_path / 'gone.json'}", "quarantine", "file", parse.UNREADABLE),
        (f"file:{good}", "resource", "line 1", None),
    ]
    assert rows[1]["file_modified"] == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _raising_splitter(error: Exception) -> Callable[..., Iterator[Record]]:
    def split_then_fail(self: FileSplitter, raw: Any, size: int | None = None) -> Iterator[Record]:
        yield Record("skipped", "line 1", resource_type="Patient")
        raise error

    return split_then_fail


def test_unexpected_splitter_error_quarantines_the_file_not_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.ndjson"
    path.write_bytes(ndjson(GOOD_A))
    monkeypatch.setattr(FileSplitter, "split", _raising_splitter(KeyError("boom")))
    rows = _run_files([f"file:{path}"])
    assert [(r["kind"], r["position"], r["reason"]) for r in rows] == [
        ("skipped", "line 1", None),
        ("quarantine", "file", parse.UNREADABLE),
    ]
    assert rows[1]["message"] == "cannot split: KeyError"


def test_a_document_the_worker_cannot_hold_is_quarantined_not_retried_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.ndjson"
    path.write_bytes(ndjson(GOOD_A))
    monkeypatch.setattr(FileSplitter, "split", _raising_splitter(MemoryError()))
    rows = _run_files([f"file:{path}"])
    assert [(r["kind"], r["position"], r["reason"]) for r in rows] == [
        ("skipped", "line 1", None),  # what was read before it stays
        ("quarantine", "file", parse.RECORD_TOO_LARGE),
    ]
    assert rows[1]["message"] == records.OUT_OF_MEMORY


def test_transient_s3_errors_fail_the_task_for_a_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ReadTimeoutError

    path = tmp_path / "x.ndjson"
    path.write_bytes(ndjson(GOOD_A))
    monkeypatch.setattr(FileSplitter, "split", _raising_splitter(ReadTimeoutError(endpoint_url="http://s3")))
    with pytest.raises(ReadTimeoutError):
        _run_files([f"file:{path}"])


def test_a_file_that_exists_but_cannot_be_read_fails_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.ndjson"
    path.write_bytes(ndjson(GOOD_A))

    def denied(uri: str) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(records, "open_uri", denied)
    with pytest.raises(storage.FileReadError) as failed:
        _run_files([f"file:{path}"])
    assert failed.value.uri == f"file:{path}"
    assert str(failed.value).startswith(f"cannot read file:{path} (PermissionError); nothing of it is committed")


def test_an_s3_object_in_glacier_fails_the_batch_and_reads_once_restored(s3_bucket: str) -> None:
    from streaming import aws

    s3 = aws.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="landing/cold.ndjson", Body=ndjson(GOOD_A), StorageClass="GLACIER")
    uri = f"s3a://{s3_bucket}/landing/cold.ndjson"
    with pytest.raises(storage.FileReadError, match=r"\(PermissionError: InvalidObjectState\)"):
        _run_files([uri])
    s3.restore_object(Bucket=s3_bucket, Key="landing/cold.ndjson", RestoreRequest={"Days": 1})
    assert [(r["kind"], r["resource_id"]) for r in _run_files([uri])] == [("resource", "good-a")]


def test_local_path_cuts_file_uris_without_unquoting() -> None:
    assert storage.local_path("file:/data/a%41 b.json") == "/data/a%41 b.json"
    assert storage.local_path("file:///data/x.json") == "/data/x.json"
    assert storage.local_path("/data/x.json") == "/data/x.json"
    assert storage.split_s3_uri("s3a://bucket/landing/a?b#c.json") == ("bucket", "landing/a?b#c.json")


def test_s3_object_streams_and_a_missing_one_is_file_not_found(s3_bucket: str) -> None:
    from streaming import aws

    data = gzip.compress(ndjson(GOOD_A, GOOD_B))
    aws.client("s3").put_object(Bucket=s3_bucket, Key="landing/x y.ndjson.gz", Body=data)
    with storage.open_uri(f"s3a://{s3_bucket}/landing/x y.ndjson.gz") as raw:
        assert outline(list(FileSplitter(LIMITS).split(raw, len(data)))) == [
            ("resource", "line 1", "good-a"),
            ("resource", "line 2", "good-b"),
        ]
    with pytest.raises(FileNotFoundError):
        storage.open_uri(f"s3a://{s3_bucket}/landing/missing.json")
    rows = _run_files([f"s3a://{s3_bucket}/landing/missing.json"])
    assert [(r["kind"], r["reason"], r["message"]) for r in rows] == [
        ("quarantine", parse.UNREADABLE, "cannot read: FileNotFoundError")
    ]


def test_depth_limit_is_exact_for_resources_and_bundle_entries() -> None:
    """max_depth counts every object/array from the file's root: an Encounter is depth 1, its entry in a Bundle 4."""
    limits = FhirConfig(max_depth=20)

    def standalone(k: int) -> list[tuple[str, str, str | None]]:  # Encounter 1 + extension list 1 + k = k + 2
        return outline(split(ndjson(encounter("d", extension=[deep(k)])), limits))

    assert standalone(18) == [("resource", "line 1", "d")]
    assert standalone(19) == [("quarantine", "line 1", parse.TOO_DEEP)]

    def in_bundle(k: int) -> list[tuple[str, str, str | None]]:  # Bundle 1, entry list 2, entry 3: k + 5
        entries = [{"resource": encounter("ok")}, {"resource": encounter("d", extension=[deep(k)])}]
        return outline(split(json.dumps(bundle("collection", entries), indent=1).encode(), limits))

    assert in_bundle(15) == [("resource", "entry 0", "ok"), ("resource", "entry 1", "d")]
    assert in_bundle(16) == [("resource", "entry 0", "ok"), ("quarantine", "entry 1", parse.TOO_DEEP)]

    too_deep_meta = {**bundle("collection", [{"resource": encounter("ok")}]), "meta": {"extension": [deep(19)]}}
    pretty = json.dumps(too_deep_meta, indent=1)
    recs = split(pretty.encode(), FhirConfig(max_depth=20, raw_slice_chars=30))
    assert outline(recs) == [("quarantine", "file", parse.TOO_DEEP)]
    assert recs[0].raw_slice == pretty[:30]  # the file's own text, not a re-serialisation
