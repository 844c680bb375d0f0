"""What the cheaper read step must keep: split_files' rows column for column, a worker that imports only
what it runs, and every shape of `class` judged as before with one parse per row.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from parse_cases import LIMITS, bundle, encounter, split

from streaming.bronze import records
from streaming.fhir.reasons import SCHEMA_MISMATCH

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_split_files_rows_carry_each_record_field_in_its_own_column(tmp_path: Path) -> None:
    """Rows built as tuples must put every Record field under its own name (a swapped column would still load)."""
    org = {"resourceType": "Organization", "id": "o1", "name": "General"}
    enc = encounter("e1", serviceProvider={"reference": "urn:uuid:org-1"})
    doc = {
        **bundle(
            "collection",
            [
                {"fullUrl": "urn:uuid:org-1", "resource": org},
                {"resource": enc, "response": {"status": "200", "lastModified": "2024-01-01T12:00:00Z"}},
            ],
        ),
        "meta": {"lastUpdated": "2024-01-02T03:04:05Z", "source": "ehr-a"},
        "timestamp": "2024-01-01T00:00:00Z",
    }
    data = json.dumps(doc).encode()
    path = tmp_path / "b.json"
    path.write_bytes(data)
    listing = pa.RecordBatch.from_pylist(
        [{"uri": f"file:{path}", "length": len(data), "modified": NOW}],
        schema=pa.schema([("uri", pa.string()), ("length", pa.int64()), ("modified", pa.timestamp("us", tz="UTC"))]),
    )
    rows = pa.Table.from_batches(list(records.split_files(LIMITS, iter([listing])))).to_pylist()

    expected = [
        {
            "sourcename": f"file:{path}",
            "position": r.position,
            "kind": r.kind,
            "resource_type": r.resource_type,
            "resource_id": r.resource_id,
            "resource_json": r.resource_json,
            "ref_map": list(r.ref_map.items()),
            "ref_names": list(r.ref_names.items()),
            "reason": r.reason,
            "message": r.message,
            "raw_slice": r.raw_slice,
            "file_modified": NOW,
            "ordinal": i,
            "bundle_last_updated": r.bundle_last_updated,
            "bundle_timestamp": r.bundle_timestamp,
            "entry_last_modified": r.entry_last_modified,
            "bundle_source": r.bundle_source,
        }
        for i, r in enumerate(split(data))
    ]
    assert rows == expected
    # The Encounter row, written out: the Bundle's context and times reached their columns.
    assert (rows[1]["kind"], rows[1]["resource_id"], rows[1]["ordinal"]) == ("resource", "e1", 1)
    assert rows[1]["ref_names"] == [("urn:uuid:org-1", "General")]
    times = ("bundle_last_updated", "bundle_timestamp", "entry_last_modified", "bundle_source")
    assert tuple(rows[1][k] for k in times) == (
        "2024-01-02T03:04:05Z",
        "2024-01-01T00:00:00Z",
        "2024-01-01T12:00:00Z",
        "ehr-a",
    )


def test_the_python_workers_import_only_what_splitting_needs() -> None:
    """A worker imports streaming.bronze.records to run split_files; the driver-only modules must not come with it."""
    # boto3: only a worker reading from S3 needs it (storage imports it then).
    driver_only = [
        "distutils",
        "setuptools",
        "pkg_resources",
        "streaming.pipeline.failures",
        "streaming.ledger",
        "boto3",
    ]
    code = f"import sys, streaming.bronze.records; print([m for m in {driver_only!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    # The driver still gets the Spark schema, derived from the Arrow one.
    assert records.RECORD_SCHEMA.fieldNames() == records._ARROW_SCHEMA.names


# `class` values -> the reject message flatten gives (None: accepted). R4 is one Coding, R5 a list of CodeableConcepts.
CLASS_CASES: dict[str, tuple[Any, str | None]] = {
    "r4-coding": ({"code": "IMP"}, None),
    "r4-coding-object-code": ({"code": {"x": 1}}, None),  # a string element takes any JSON value as text
    "r4-empty-object": ({}, None),
    "r5-list": ([{"coding": [{"code": "EMER"}]}], None),
    "r5-empty-list": ([], None),
    "r5-null-element": ([None], None),
    "null": (None, None),
    "string": ("AMB", "wrong JSON type: Encounter.class"),
    "string-like-a-list": ("[oops", "wrong JSON type: Encounter.class"),
    "string-spaces-then-brace": (" \n{", "wrong JSON type: Encounter.class"),
    "number": (5, "wrong JSON type: Encounter.class"),
    "boolean": (True, "wrong JSON type: Encounter.class"),
    "r5-list-of-numbers": ([5], "wrong JSON type: Encounter.class"),
    "r5-coding-not-a-list": ([{"coding": {"code": "X"}}], "wrong JSON type: Encounter.class"),
    "r5-coding-of-strings": ([{"coding": ["IMP"]}], "wrong JSON type: Encounter.class"),
}


@pytest.mark.spark
def test_every_shape_of_class_is_judged_as_its_fhir_type_says(spark: Any) -> None:
    from streaming.bronze.flatten import flatten

    rows = []
    for name, (value, _) in CLASS_CASES.items():
        resource = {"resourceType": "Encounter", "id": name, "status": "finished", "class": value}
        rows.append({"sourcename": "file:/x", "position": name, "kind": "resource", "resource_id": name,
                     "resource_json": json.dumps(resource), "file_modified": NOW, "ordinal": 0})  # fmt: skip
    # Two wrong elements: both are named, the read elements in READ_FIELDS order, class last.
    both = {"resourceType": "Encounter", "id": "two", "class": 5, "period": "2024"}
    rows.append({"sourcename": "file:/x", "position": "two", "kind": "resource", "resource_id": "two",
                 "resource_json": json.dumps(both), "file_modified": NOW, "ordinal": 0})  # fmt: skip
    df = spark.createDataFrame(
        [{**dict.fromkeys(records.RECORD_SCHEMA.fieldNames()), **r} for r in rows], records.RECORD_SCHEMA
    )
    got = {r.source_position: (r.reject_reason, r.reject_message) for r in flatten(df, ingested_at=NOW).collect()}

    expected = {name: ((SCHEMA_MISMATCH, msg) if msg else (None, None)) for name, (_, msg) in CLASS_CASES.items()}
    expected["two"] = (SCHEMA_MISMATCH, "wrong JSON type: Encounter.period, Encounter.class")
    assert got == expected
