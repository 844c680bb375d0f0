"""FileSplitter on in-memory bytes (no Spark), the FHIR side: Bundles of every type and their references, deletes,
other resource types, the quarantine classes FHIR structure decides, depth limits, lone surrogates, robustness.

The byte side (shapes, gzip, limits, UTF-8, JSON syntax) is in test_bytestream.py, the executor side in
test_records.py, file access in test_storage.py; they share the builders in parse_cases.py. Expected records are
built from the inputs each test writes; positions are `line N` (1-based, blank lines counted), `entry N` (0-based
index in Bundle.entry), `line N entry M` or `file`.
"""

from __future__ import annotations

import gzip
import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from parse_cases import (
    FHIR_FAULTS,
    GOOD_A,
    GOOD_B,
    LIMITS,
    PRETTY,
    bundle,
    check_bounded,
    compact,
    deep,
    encounter,
    ndjson,
    outline,
    split,
)

from streaming.bronze import records
from streaming.config import FhirConfig
from streaming.fhir import reasons
from streaming.fhir.bytestream import UTF8_BOM


# -- Bundles -----------------------------------------------------------------------------------------------------
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
        ("quarantine", "line 3 entry 2", reasons.BAD_BUNDLE_ENTRY),
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
        ("quarantine", "entry 4", reasons.BAD_BUNDLE_ENTRY),
        ("quarantine", "entry 5", reasons.BAD_BUNDLE_ENTRY),
    ]
    assert recs[1].resource_type == "Encounter" and recs[1].resource_json is None


# -- quarantine classes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FHIR_FAULTS))
def test_quarantine_classes(name: str) -> None:
    data, overrides, expected = FHIR_FAULTS[name]
    limits = FhirConfig(**{**LIMITS.__dict__, **overrides})
    recs = split(data, limits)
    assert outline(recs) == expected
    check_bounded(recs, limits)


def test_quarantine_keeps_a_bounded_slice_of_the_raw_text() -> None:
    bad = '{"resourceType": "Encounter", "id": "bad", "note": "' + "z" * 500 + '", }'
    recs = split(ndjson(GOOD_A, bad), FhirConfig(raw_slice_chars=40))
    assert outline(recs)[1] == ("quarantine", "line 2", reasons.MALFORMED_JSON)
    assert recs[1].raw_slice == bad[:40]
    assert "z" * 10 not in (recs[1].message or "")  # the message never carries the record's content

    recs = split(b'{"id": "a\xff' + b"y" * 500 + b'"}\n', FhirConfig(raw_slice_chars=30))
    assert outline(recs) == [("quarantine", "line 1", reasons.INVALID_UTF8)]
    assert recs[0].raw_slice == '{"id": "a\ufffd' + "y" * 20


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


# -- robustness: no input makes the splitter raise ----------------------------------------------------------------
def _seeds() -> list[bytes]:
    return [
        ndjson(GOOD_A, encounter("f-1", subject={"reference": "urn:uuid:p"}), GOOD_B),
        json.dumps(bundle("transaction", synthea_like_entries()), indent=2).encode(),
        compact(bundle("collection", synthea_like_entries())).encode(),
        UTF8_BOM + PRETTY.encode(),
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


def test_depth_limit_is_exact_for_resources_and_bundle_entries() -> None:
    """max_depth counts every object/array from the file's root: an Encounter is depth 1, its entry in a Bundle 4."""
    limits = FhirConfig(max_depth=20)

    def standalone(k: int) -> list[tuple[str, str, str | None]]:  # Encounter 1 + extension list 1 + k = k + 2
        return outline(split(ndjson(encounter("d", extension=[deep(k)])), limits))

    assert standalone(18) == [("resource", "line 1", "d")]
    assert standalone(19) == [("quarantine", "line 1", reasons.TOO_DEEP)]

    def in_bundle(k: int) -> list[tuple[str, str, str | None]]:  # Bundle 1, entry list 2, entry 3: k + 5
        entries = [{"resource": encounter("ok")}, {"resource": encounter("d", extension=[deep(k)])}]
        return outline(split(json.dumps(bundle("collection", entries), indent=1).encode(), limits))

    assert in_bundle(15) == [("resource", "entry 0", "ok"), ("resource", "entry 1", "d")]
    assert in_bundle(16) == [("resource", "entry 0", "ok"), ("quarantine", "entry 1", reasons.TOO_DEEP)]

    too_deep_meta = {**bundle("collection", [{"resource": encounter("ok")}]), "meta": {"extension": [deep(19)]}}
    pretty = json.dumps(too_deep_meta, indent=1)
    recs = split(pretty.encode(), FhirConfig(max_depth=20, raw_slice_chars=30))
    assert outline(recs) == [("quarantine", "file", reasons.TOO_DEEP)]
    assert recs[0].raw_slice == pretty[:30]  # the file's own text, not a re-serialisation
