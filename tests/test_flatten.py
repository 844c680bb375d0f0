"""flatten() on hand-written R4 and R5 Encounters (tests/fixtures/fhir): every mapping rule and fallback, R4/R5
twins, quarantine reasons and messages, deletes, ordering, resource_json and the partition rule.

All fixtures go through one flatten (two, for keep_resource_json off) and every output row is compared, column by
column, with an expected row written out here by hand: timestamps from wall-clock time plus offset, partitions
from a re-implementation of the documented rule.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from helpers import PARTITION_NAMES, expected_partition
from pyspark.sql import functions as F

from streaming.bronze.flatten import (
    BAD_DATETIME,
    BRONZE_COLUMNS,
    INVALID_ID,
    MISSING_ID,
    SCHEMA_MISMATCH,
    flatten,
    hospital_partition,
)
from streaming.bronze.records import RECORD_SCHEMA
from streaming.config import FhirConfig
from streaming.fhir.mapping import DERIVED, RULES
from streaming.fhir.parse import FileSplitter

pytestmark = pytest.mark.spark  # every test flattens on the session Spark (a JVM)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "fhir"
LANDING = "file:///landing"
FILE_MODIFIED = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)
INGESTED_AT = datetime(2024, 6, 2, 9, 30, tzinfo=UTC)
# Every record not from a Bundle carries an unrelated Bundle context: lookups with missing or null keys must
# return nothing, never the unrelated value.
UNRELATED_MAP = {"urn:uuid:00000000-0000-4000-8000-00000000dead": "Patient/unrelated"}
UNRELATED_NAMES = {"urn:uuid:00000000-0000-4000-8000-00000000dead": "Unrelated Org"}

OUTPUT = (*BRONZE_COLUMNS, "_hoodie_is_deleted", "kind", "reject_reason", "reject_message", "raw_slice")
TIMESTAMPS = ("admission_time", "discharge_time", "last_updated", "precombine_ts", "ingested_at", "source_modified")
MAPPED = tuple(rule.column for rule in RULES)


# -- expected values, computed without Spark ------------------------------------------------------------------------
def ts(wall: str, offset: str = "+00:00") -> str:
    """A wall-clock time (`YYYY-MM-DD HH:MM:SS[.ffffff]`) at a UTC offset, as the UTC text the test reads back."""
    sign = -1 if offset.startswith("-") else 1
    hours, minutes = (int(x) for x in offset[1:].split(":"))
    zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    local = datetime.strptime(wall, "%Y-%m-%d %H:%M:%S.%f" if "." in wall else "%Y-%m-%d %H:%M:%S")
    return local.replace(tzinfo=zone).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


MODIFIED_TS = ts("2024-06-01 08:00:00")
# A version without event time is ordered by its landing time, stored as 1970-01-01 + epoch milliseconds in µs.
LANDING_TS = (datetime(1970, 1, 1) + timedelta(microseconds=round(FILE_MODIFIED.timestamp() * 1000))).strftime(
    "%Y-%m-%dT%H:%M:%S.%f"
)
INGESTED_TS = ts("2024-06-02 09:30:00")


def _leaf_strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _leaf_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _leaf_strings(v)]
    return [value] if isinstance(value, str) else []


# -- records -------------------------------------------------------------------------------------------------------
def _record(
    source: str,
    position: str,
    kind: str = "resource",
    text: str | None = None,
    *,
    resource_id: str | None = None,
    ref_map: dict[str, str] | None = None,
    ref_names: dict[str, str] | None = None,
    reason: str | None = None,
    message: str | None = None,
    raw_slice: str | None = None,
) -> dict[str, Any]:
    if text is not None and resource_id is None:  # as parse.py: the id when it is a JSON string
        rid = json.loads(text).get("id")
        resource_id = rid if isinstance(rid, str) else None
    return {
        "sourcename": source,
        "position": position,
        "kind": kind,
        "resource_type": "Encounter" if kind in ("resource", "delete") else None,
        "resource_id": resource_id,
        "resource_json": text,
        "ref_map": UNRELATED_MAP if ref_map is None else ref_map,
        "ref_names": UNRELATED_NAMES if ref_names is None else ref_names,
        "reason": reason,
        "message": message,
        "raw_slice": raw_slice,
        "file_modified": FILE_MODIFIED,
    }


def _fixture_records() -> tuple[list[dict[str, Any]], dict[tuple[str, str], str]]:
    """Records of every fixture, and (sourcename, position) -> the key the expected rows use."""
    records, keys = [], {}
    for version in ("r4", "r5"):
        twin = FIXTURES / version / "encounter-twin.json"
        source = f"{LANDING}/{version}/{twin.name}"
        records.append(_record(source, "file", text=twin.read_text()))
        keys[(source, "file")] = f"{version}-twin"

        variants = FIXTURES / version / "variants.ndjson"
        source = f"{LANDING}/{version}/{variants.name}"
        for number, line in enumerate(variants.read_text().splitlines(), start=1):
            position = f"line {number}"
            records.append(_record(source, position, text=line))
            rid = json.loads(line).get("id")
            keys[(source, position)] = rid if isinstance(rid, str) and rid else position

        # Bundles go through the real splitter: it supplies the fullUrl map and the names flatten falls back on.
        bundle = FIXTURES / version / "bundle-twin.json"
        source = f"{LANDING}/{version}/{bundle.name}"
        for split in FileSplitter(FhirConfig()).split(io.BytesIO(bundle.read_bytes())):
            if split.kind not in ("resource", "delete"):
                continue
            records.append(
                _record(
                    source,
                    split.position,
                    split.kind,
                    split.resource_json,
                    resource_id=split.resource_id,
                    ref_map=dict(split.ref_map),
                    ref_names=dict(split.ref_names),
                )
            )
            keys[(source, split.position)] = f"{version}-bundle-{split.kind}"
    return records, keys


INLINE = f"{LANDING}/inline.ndjson"
LONG_SLICE = "{not json " * 30


def _inline_records() -> list[dict[str, Any]]:
    return [
        _record(INLINE, "line 1", "delete", resource_id="del-1"),
        _record(INLINE, "line 2", "delete", resource_id="bad id"),
        _record(INLINE, "line 3", "delete", resource_id=None),
        _record(
            INLINE, "line 4", "quarantine", reason="malformed_json", message="bad at column 1", raw_slice=LONG_SLICE
        ),
        _record(INLINE, "line 5", "skipped"),
        _record(INLINE, "line 6", text='{"resourceType":"Patient","id":"pat-1"}'),
    ]


# -- expected rows -------------------------------------------------------------------------------------------------
def _resource(source: str, position: str, text: str, version: str | None, **values: Any) -> dict[str, Any]:
    """An expected resource row: the given values, everything else null, derived columns per their rules."""
    row: dict[str, Any] = dict.fromkeys(OUTPUT)
    row.update(
        fhir_version=version,
        sourcename=source,
        source_position=position,
        resource_json=text,
        ingested_at=INGESTED_TS,
        _hoodie_is_deleted=False,
        is_deleted=False,
        source_modified=MODIFIED_TS,
        kind="resource",
    )
    row.update(values)
    if "precombine_ts" not in values:
        row["precombine_ts"] = row["last_updated"] or LANDING_TS
    if "hospital_partition" not in values:
        deleted = row["kind"] == "delete"
        row["hospital_partition"] = "__deleted__" if deleted else expected_partition(row["hospital_name"])
    if row["reject_reason"] is not None and "raw_slice" not in values:
        row["raw_slice"] = text[:2000] if text is not None else None
    return row


TWIN = {
    "encounter_id": "twin-1",
    "status": "in-progress",
    "class_code": "EMER",
    "encounter_type": "Emergency",
    "patient_ref": "Patient/pat-1",
    "admission_time": ts("2013-03-11 10:00:00", "+05:30"),
    "discharge_time": None,  # ongoing
    "department": "Emergency Department",  # the first of two locations
    "participant_role": "ATND",  # the RelatedPerson before the first practitioner is skipped
    "practitioner_ref": "Practitioner/prac-1",
    "hospital_name": "Good Health Clinic",
    "last_updated": ts("2024-05-01 12:30:00.250000", "+02:00"),
}
BUNDLE_TWIN = {
    "encounter_id": "bundle-twin",
    "status": "cancelled",
    "class_code": "IMP",
    "encounter_type": "Inpatient",
    "patient_ref": "Patient/pat-2",  # urn:uuid resolved through fullUrl
    "admission_time": ts("2013-03-01 00:00:00"),  # "2013-03": start of the month, UTC
    "discharge_time": ts("2013-03-11 18:00:00", "-08:00"),
    "department": "Unidade de Cuidados Intensivos",  # no display: the Location's name in the Bundle
    "participant_role": "primary performer",  # no coding: the type's text
    "practitioner_ref": "Practitioner/prac-3",  # urn:uuid resolved, and recognised as a practitioner by it
    "hospital_name": "Hôpital Saint-Éloi",  # no display: the Organization's name in the Bundle
    "last_updated": None,
}
# The bundles' DELETE entry: a tombstone with only the key; no Bundle time here, so ordered by the file's time.
BUNDLE_DELETE = {"encounter_id": "gone-1", "kind": "delete", "is_deleted": True, "resource_json": None}

R4_VARIANTS: dict[str, dict[str, Any]] = {
    "r4-class-imp": {"class_code": "IMP", "encounter_type": "Inpatient"},
    "r4-class-acute": {"class_code": "ACUTE", "encounter_type": "Inpatient"},
    "r4-class-nonac": {"class_code": "NONAC", "encounter_type": "Inpatient"},
    "r4-class-ss": {"class_code": "SS", "encounter_type": "Short stay"},
    "r4-class-obsenc": {"class_code": "OBSENC", "encounter_type": "Observation"},
    "r4-class-prenc": {"class_code": "PRENC", "encounter_type": "Pre-admission"},
    "r4-class-amb": {"class_code": "AMB", "encounter_type": "Outpatient-Ambulatory"},  # label beats display
    "r4-class-emer": {"class_code": "EMER", "encounter_type": "Emergency"},
    "r4-class-hh": {"class_code": "HH", "encounter_type": "Home health"},
    "r4-class-vr": {"class_code": "VR", "encounter_type": "Virtual"},
    "r4-class-fld": {"class_code": "FLD", "encounter_type": "Field"},
    "r4-class-unknown": {"class_code": "MOBILE", "encounter_type": "Mobile unit"},
    "r4-class-unknown-bare": {"class_code": "MOBILE"},
    "r4-class-lowercase": {"class_code": "imp"},  # codes are case-sensitive
    "r4-class-display-only": {"encounter_type": "Day clinic"},
    "r4-part-role": {"participant_role": "ATND", "practitioner_ref": "PractitionerRole/role-1"},
    "r4-part-absolute": {"participant_role": "PPRF", "practitioner_ref": "https://x/fhir/Practitioner/1"},
    "r4-part-conditional": {
        "participant_role": "primary performer",
        "practitioner_ref": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999973209",
    },
    "r4-part-type-only": {"participant_role": "CON"},
    "r4-part-history": {"participant_role": "SPRF", "practitioner_ref": "Practitioner/prac-9/_history/2"},
    "r4-part-lookalike": {},  # RelatedPerson/Practitioner is not a practitioner
    "r4-part-display-first": {"participant_role": "ADM", "practitioner_ref": "Practitioner/prac-4"},
    "r4-loc-no-display": {},  # no display, no Bundle: null (the second location's display is not used)
    "r4-loc-empty": {},
    "r4-org-no-display": {},
    "r4-time-z": {
        "admission_time": ts("2013-03-11 10:00:00"),
        "discharge_time": ts("2013-03-11 11:30:00.500000"),
        "last_updated": ts("2024-05-01 12:00:00", "+02:00"),
    },
    "r4-time-offsets": {
        "admission_time": ts("2013-03-11 10:00:00", "+05:30"),
        "discharge_time": ts("2013-03-12 01:15:00", "-08:00"),
    },
    "r4-time-fraction": {  # nanoseconds are cut to Spark's microseconds
        "admission_time": ts("2013-03-11 10:00:00.123456", "+01:00"),
        "discharge_time": ts("2013-03-11 10:00:00.123000"),
    },
    "r4-time-year": {"admission_time": ts("2013-01-01 00:00:00"), "discharge_time": ts("2014-01-01 00:00:00")},
    "r4-time-month": {"admission_time": ts("2013-03-01 00:00:00"), "discharge_time": ts("2013-04-01 00:00:00")},
    "r4-time-date": {"admission_time": ts("2012-02-29 00:00:00"), "discharge_time": ts("2013-03-11 00:00:00")},
    "r4-bad-month-13": {"reject_reason": BAD_DATETIME, "reject_message": "not a FHIR dateTime: Encounter.period.start"},
    "r4-bad-feb-30": {
        "admission_time": ts("2013-03-11 10:00:00"),
        "reject_reason": BAD_DATETIME,
        "reject_message": "not a FHIR dateTime: Encounter.period.end",
    },
    "r4-bad-word": {"reject_reason": BAD_DATETIME, "reject_message": "not a FHIR dateTime: Encounter.period.start"},
    "r4-bad-no-zone": {"reject_reason": BAD_DATETIME, "reject_message": "not a FHIR dateTime: Encounter.period.start"},
    "r4-bad-year-0": {"reject_reason": BAD_DATETIME, "reject_message": "not a FHIR dateTime: Encounter.period.start"},
    "r4-bad-both": {
        "reject_reason": BAD_DATETIME,
        "reject_message": "not a FHIR dateTime: Encounter.period.start, Encounter.period.end",
    },
    "r4-bad-last-updated": {
        "reject_reason": BAD_DATETIME,
        "reject_message": "not a FHIR dateTime: Encounter.meta.lastUpdated",
    },
    "A.b-9": {},
    "a123456789b123456789c123456789d123456789e123456789f123456789ghij": {},  # 64 characters
    "a123456789b123456789c123456789d123456789e123456789f123456789ghijk": {
        "reject_reason": INVALID_ID,
        "reject_message": "Encounter.id is not a FHIR id",
    },
    "has space": {"reject_reason": INVALID_ID, "reject_message": "Encounter.id is not a FHIR id"},
    "line 43": {"encounter_id": "", "reject_reason": INVALID_ID, "reject_message": "Encounter.id is not a FHIR id"},
    "line 44": {
        "encounter_id": None,
        "admission_time": ts("2013-03-11 00:00:00"),
        "reject_reason": MISSING_ID,
        "reject_message": "Encounter.id is missing",
    },
    "line 45": {  # "id": 123
        "encounter_id": "123",
        "reject_reason": INVALID_ID,
        "reject_message": "Encounter.id is not a JSON string",
    },
    # A wrong JSON type is quarantined, not read as a silent null (Spark's from_json would keep the id and drop
    # the element).
    "r4-shape-period": {"reject_reason": SCHEMA_MISMATCH, "reject_message": "wrong JSON type: Encounter.period"},
    "r4-shape-participant": {
        "reject_reason": SCHEMA_MISMATCH,
        "reject_message": "wrong JSON type: Encounter.participant",
    },
    "r4-shape-nested": {"reject_reason": SCHEMA_MISMATCH, "reject_message": "wrong JSON type: Encounter.participant"},
    "r4-shape-class": {"reject_reason": SCHEMA_MISMATCH, "reject_message": "wrong JSON type: Encounter.class"},
    "r4-shape-two": {
        "reject_reason": SCHEMA_MISMATCH,
        "reject_message": "wrong JSON type: Encounter.period, Encounter.serviceProvider",
    },
    "r4-status-planned": {"status": "planned"},
    # An R5 status code on an R4-shaped Encounter: the period still counts, the code is kept as sent.
    "r4-status-r5-code": {"status": "completed", "admission_time": ts("2013-03-11 00:00:00")},
}

R5_VARIANTS: dict[str, dict[str, Any]] = {
    "r5-class-imp": {"class_code": "IMP", "encounter_type": "Inpatient"},
    "r5-class-vr": {"class_code": "VR", "encounter_type": "Virtual"},
    "r5-class-unknown": {"class_code": "MOBILE", "encounter_type": "Mobile unit"},
    "r5-class-unknown-text": {"class_code": "MOBILE", "encounter_type": "Mobile unit (text)"},
    "r5-class-text-only": {"encounter_type": "Day clinic"},
    "r5-class-many": {"class_code": "EMER", "encounter_type": "Emergency"},  # first coding of the first class
    "r5-class-empty": {"status": "in-progress"},
    "r5-part-role": {"participant_role": "ATND", "practitioner_ref": "PractitionerRole/role-1"},
    "r5-part-absolute": {"participant_role": "PPRF", "practitioner_ref": "https://x/fhir/Practitioner/1"},
    "r5-part-conditional": {
        "participant_role": "primary performer",
        "practitioner_ref": "PractitionerRole?identifier=http://example.org/roles|r-77",
    },
    "r5-part-type-only": {"participant_role": "CON"},
    "r5-part-patient-first": {"participant_role": "ATND", "practitioner_ref": "Practitioner/prac-5"},
    "r5-part-device-only": {},
    "r5-time-offsets": {
        "admission_time": ts("2013-03-11 10:00:00", "-08:00"),
        "discharge_time": ts("2013-03-11 23:59:59.999999", "+14:00"),
    },
    "r5-time-partial": {"admission_time": ts("2013-03-01 00:00:00"), "discharge_time": ts("2013-03-11 00:00:00")},
    "r5-bad-end": {
        "admission_time": ts("2013-03-11 10:00:00"),
        "reject_reason": BAD_DATETIME,
        "reject_message": "not a FHIR dateTime: Encounter.actualPeriod.end",
    },
    "r5-bad-no-zone": {
        "reject_reason": BAD_DATETIME,
        "reject_message": "not a FHIR dateTime: Encounter.actualPeriod.start",
    },
    # Nothing but an R5-only status code: still R5, the code kept as sent.
    "r5-status-completed": {},
    "r5-status-discharged": {"status": "discharged"},
    "r5-status-on-hold": {"status": "on-hold"},
    "r5-status-discontinued": {"status": "discontinued"},
    "r5-status-shared": {"status": "in-progress", "admission_time": ts("2013-03-11 00:00:00")},
    "r5-shape-actual-period": {
        "reject_reason": SCHEMA_MISMATCH,
        "reject_message": "wrong JSON type: Encounter.actualPeriod",
    },
    "r5-shape-class": {"reject_reason": SCHEMA_MISMATCH, "reject_message": "wrong JSON type: Encounter.class"},
    "r5-shape-actor": {"reject_reason": SCHEMA_MISMATCH, "reject_message": "wrong JSON type: Encounter.participant"},
}

# Fixtures where a rule's own path is empty and its fallback gives the value.
FALLBACK_CASES = {
    "encounter_type": ["r4-class-unknown", "r4-class-display-only", "r5-class-unknown-text", "r5-class-text-only"],
    "department": ["r4-bundle-resource", "r5-bundle-resource"],
    "participant_role": ["r4-part-conditional", "r5-part-conditional", "r4-bundle-resource"],
    "hospital_name": ["r4-bundle-resource", "r5-bundle-resource"],
}


def _expected_rows(records: list[dict[str, Any]], keys: dict[tuple[str, str], str]) -> dict[str, dict[str, Any]]:
    expected: dict[str, dict[str, Any]] = {}
    for record in records:
        source, position, text = record["sourcename"], record["position"], record["resource_json"]
        if source == INLINE:
            continue
        key = keys[(source, position)]
        version = "R5" if "/r5/" in source else "R4"
        if key.endswith("-twin"):
            expected[key] = _resource(source, position, text, version, **TWIN)
        elif key.endswith("-bundle-resource"):
            expected[key] = _resource(source, position, text, version, **BUNDLE_TWIN)
        elif key.endswith("-bundle-delete"):
            expected[key] = _resource(source, position, None, None, **BUNDLE_DELETE)
        else:
            variants = R5_VARIANTS if version == "R5" else R4_VARIANTS
            values = {"encounter_id": key, "status": "completed" if version == "R5" else "finished"}
            expected[key] = _resource(source, position, text, version, **{**values, **variants.pop(key)})
    assert not R4_VARIANTS and not R5_VARIANTS, "expected rows without a fixture"

    inline = {
        "line 1": _resource(INLINE, "line 1", None, None, encounter_id="del-1", kind="delete", is_deleted=True),
        "line 2": _resource(
            INLINE,
            "line 2",
            None,
            None,
            encounter_id="bad id",
            kind="delete",
            is_deleted=True,
            reject_reason=INVALID_ID,
            reject_message="DELETE entry's Encounter id is not a FHIR id",
        ),
        "line 3": _resource(
            INLINE,
            "line 3",
            None,
            None,
            kind="delete",
            is_deleted=True,
            reject_reason=MISSING_ID,
            reject_message="DELETE entry has no Encounter id",
        ),
        "line 4": _resource(
            INLINE,
            "line 4",
            None,
            None,
            kind="quarantine",
            reject_reason="malformed_json",
            reject_message="bad at column 1",
            raw_slice=LONG_SLICE,
        ),
        "line 5": _resource(INLINE, "line 5", None, None, kind="skipped"),
        "line 6": _resource(
            INLINE,
            "line 6",
            '{"resourceType":"Patient","id":"pat-1"}',
            None,
            encounter_id="pat-1",
            reject_reason=SCHEMA_MISMATCH,
            reject_message="resourceType is not Encounter",
        ),
    }
    expected.update({f"inline {k}": v for k, v in inline.items()})
    return expected


def _collect(df: Any) -> list[dict[str, Any]]:
    readable = df.select(
        *[F.date_format(c, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS").alias(c) if c in TIMESTAMPS else F.col(c) for c in OUTPUT]
    )
    return [row.asDict() for row in readable.collect()]


@pytest.fixture(scope="module")
def flattened(spark: Any) -> dict[str, Any]:
    """One flatten of every fixture with the defaults, one with resource_json off and a short raw slice."""
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    records, keys = _fixture_records()
    expected = _expected_rows(records, keys)
    records += _inline_records()
    df = spark.createDataFrame(records, RECORD_SCHEMA)

    def keyed(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        out = {}
        for row in rows:
            source, position = row["sourcename"], row["source_position"]
            out[f"inline {position}" if source == INLINE else keys[(source, position)]] = row
        assert len(out) == len(rows)
        return out

    return {
        "records": records,
        "expected": expected,
        "actual": keyed(_collect(flatten(df, ingested_at=INGESTED_AT))),
        "lean": keyed(_collect(flatten(df, ingested_at=INGESTED_AT, keep_resource_json=False, raw_slice_chars=40))),
    }


# -- tests ---------------------------------------------------------------------------------------------------------
def test_every_row_matches_its_expected_row(flattened: dict[str, Any]) -> None:
    expected, actual = flattened["expected"], flattened["actual"]
    assert sorted(actual) == sorted(expected)
    mismatches = [
        (key, column, actual[key][column], expected[key][column])
        for key in sorted(expected)
        for column in OUTPUT
        if actual[key][column] != expected[key][column]
    ]
    assert not mismatches, "\n".join(f"{k} {c}: got {a!r}, expected {e!r}" for k, c, a, e in mismatches)


def test_r4_and_r5_twins_fill_the_same_columns(flattened: dict[str, Any]) -> None:
    actual = flattened["actual"]
    same = (*MAPPED, "precombine_ts", "hospital_partition", "kind", "reject_reason")
    for r4, r5 in (("r4-twin", "r5-twin"), ("r4-bundle-resource", "r5-bundle-resource")):
        assert {c: actual[r4][c] for c in same} == {c: actual[r5][c] for c in same}
        assert all(actual[r4][c] is not None for c in MAPPED if c != "discharge_time" and c != "last_updated")
        assert (actual[r4]["fhir_version"], actual[r5]["fhir_version"]) == ("R4", "R5")
    # The twins differ only in their version's shapes; both keep their own original JSON.
    assert json.loads(actual["r5-twin"]["resource_json"])["actualPeriod"] == {"start": "2013-03-11T10:00:00+05:30"}
    assert "period" not in json.loads(actual["r5-twin"]["resource_json"])


def test_bundle_rows_keep_the_entry_json(flattened: dict[str, Any]) -> None:
    for version in ("r4", "r5"):
        bundle = json.loads((FIXTURES / version / "bundle-twin.json").read_text())
        encounter = next(
            e["resource"] for e in bundle["entry"] if e.get("resource", {}).get("resourceType") == "Encounter"
        )
        assert json.loads(flattened["actual"][f"{version}-bundle-resource"]["resource_json"]) == encounter


def test_resource_json_off_and_short_raw_slice(flattened: dict[str, Any]) -> None:
    actual, lean = flattened["actual"], flattened["lean"]
    assert sorted(lean) == sorted(actual)
    for key, row in actual.items():
        slice_ = row["raw_slice"][:40] if row["raw_slice"] is not None else None
        assert lean[key] == {**row, "resource_json": None, "raw_slice": slice_}, key
    rejected = [k for k, r in actual.items() if r["reject_reason"] and r["kind"] == "resource"]
    assert len(rejected) >= 20
    assert all(lean[k]["raw_slice"] == actual[k]["resource_json"][:40] for k in rejected)
    assert sum(len(actual[k]["raw_slice"]) > 40 for k in rejected) >= 20  # and most of them were cut
    assert len(lean["inline line 4"]["raw_slice"]) == 40  # a read-time quarantine slice is bounded too


def test_messages_name_the_element_never_its_value(flattened: dict[str, Any]) -> None:
    checked = 0
    for record in flattened["records"]:
        if record["kind"] != "resource":
            continue
        row = next(
            r
            for r in flattened["actual"].values()
            if (r["sourcename"], r["source_position"]) == (record["sourcename"], record["position"])
        )
        if row["reject_message"] is None:
            continue
        values = {v for v in _leaf_strings(json.loads(record["resource_json"])) if v and v != "Encounter"}
        assert not [v for v in values if v in row["reject_message"]], row["source_position"]
        checked += 1
    assert checked >= 20


def test_fixtures_cover_every_rule_and_fallback(flattened: dict[str, Any]) -> None:
    expected = flattened["expected"]
    resources = [r for r in expected.values() if r["kind"] == "resource" and r["reject_reason"] is None]
    for version in ("R4", "R5"):
        rows = [r for r in resources if r["fhir_version"] == version]
        empty = [c for c in MAPPED if all(r[c] is None for r in rows)]
        assert not empty, f"no {version} fixture fills {empty}"
        # Each rule is also seen empty (a missing element), except the key and status every fixture has.
        always = [c for c in MAPPED if all(r[c] is not None for r in rows)]
        assert always == ["encounter_id", "status"], always
    # participant_role's fallback (the type's text) is the view's own (a union in its path), the others typed steps.
    assert set(FALLBACK_CASES) == {rule.column for rule in RULES if rule.fallback} | {"participant_role"}
    for column, keys in FALLBACK_CASES.items():
        assert all(expected[k][column] is not None for k in keys), column
    assert set(DERIVED) == {"class_r4", "class_r5", "fhir_version"}
    labels = {r["encounter_type"] for r in resources}
    assert {"Inpatient", "Outpatient-Ambulatory", "Emergency", "Home health", "Virtual"} <= labels


def test_hospital_partition_rule(spark: Any) -> None:
    df = spark.createDataFrame([(i, n) for i, n in enumerate(PARTITION_NAMES)], "i int, name string")
    got = {r.i: r.p for r in df.select("i", hospital_partition(F.col("name")).alias("p")).collect()}
    assert got == {i: expected_partition(n) for i, n in enumerate(PARTITION_NAMES)}
    # Spot checks of the rule itself, written out.
    assert got[PARTITION_NAMES.index("a/b")] == "a/b"
    assert got[PARTITION_NAMES.index("")] == got[PARTITION_NAMES.index(None)] == "__unknown__"
    assert got[PARTITION_NAMES.index("東京")] == "__~" + hashlib.sha256("東京".encode()).hexdigest()[:16]
    assert got[PARTITION_NAMES.index("x" * 500)] == "x" * 40 + "~" + hashlib.sha256(b"x" * 500).hexdigest()[:16]


def test_an_id_with_a_trailing_newline_is_not_a_fhir_id(spark: Any) -> None:
    """Java's `$` matches before a final newline; the id check must not (it would land `abc\\n` as a key)."""
    text = json.dumps({"resourceType": "Encounter", "id": "abc\n", "status": "finished"})
    record = _record(INLINE, "line 1", text=text, resource_id="abc\n")
    (row,) = flatten(spark.createDataFrame([record], RECORD_SCHEMA), ingested_at=INGESTED_AT).collect()
    assert (row["reject_reason"], row["reject_message"]) == (INVALID_ID, "Encounter.id is not a FHIR id")


def test_each_call_keeps_its_own_batch_time_and_settings(spark: Any) -> None:
    """flatten reuses its projections between calls: the batch time and the settings must still be each call's."""
    text = json.dumps({"resourceType": "Encounter", "id": "e1", "status": "finished", "class": "not a coding"})
    df = spark.createDataFrame([_record(INLINE, "line 1", text=text, resource_id="e1")], RECORD_SCHEMA)
    later = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    calls = [
        (INGESTED_AT, True, 2000),
        (later, False, 7),
        (INGESTED_AT, True, 2000),  # the first setting again, after another
    ]
    got = []
    for at, keep, chars in calls:
        rows = flatten(df, ingested_at=at, keep_resource_json=keep, raw_slice_chars=chars)
        at_text = F.date_format("ingested_at", "yyyy-MM-dd'T'HH:mm:ss").alias("at")
        got.append(tuple(rows.select(at_text, "resource_json", "raw_slice", "reject_reason").first()))
    assert got == [
        ("2024-06-02T09:30:00", text, text, SCHEMA_MISMATCH),
        ("2031-01-02T03:04:05", None, text[:7], SCHEMA_MISMATCH),
        ("2024-06-02T09:30:00", text, text, SCHEMA_MISMATCH),
    ]
