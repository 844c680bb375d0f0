"""Reading FHIR files for `views run` without Spark: which files, and one row per resource of any type."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from streaming.config import ConfigError, FhirConfig
from streaming.views.source import list_files, resources_of


def test_list_files_skips_hidden_files_below_the_folder_only(tmp_path: Path) -> None:
    source = tmp_path / ".cache" / "landing"  # a hidden folder above the source is fine
    (source / "2024" / "01").mkdir(parents=True)
    (source / ".git").mkdir()
    for name in ("a.ndjson", "2024/01/b.json.gz", ".DS_Store", ".git/config"):
        (source / name).write_text("{}")
    uris = [f.uri for f in list_files(str(source))]
    assert uris == [f"file:{source}/2024/01/b.json.gz", f"file:{source}/a.ndjson"]
    one = list_files(str(source / "a.ndjson"))
    assert [(f.uri, f.length) for f in one] == [(f"file:{source}/a.ndjson", 2)]
    with pytest.raises(ConfigError, match="no such file or folder"):
        list_files(str(tmp_path / "nowhere"))


def test_every_resource_type_becomes_a_row_and_bundles_give_their_references(tmp_path: Path) -> None:
    inner = {
        "resourceType": "Bundle",
        "entry": [
            {"fullUrl": "urn:uuid:in-1", "resource": {"resourceType": "Location", "id": "loc", "name": "Ward"}},
        ],
    }
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {"fullUrl": "urn:uuid:p-1", "resource": {"resourceType": "Patient", "id": "p1"}},
            {"fullUrl": "urn:uuid:e-1", "resource": {"resourceType": "Encounter", "id": "e1"}},
            {"resource": inner},
            {"request": {"method": "DELETE", "url": "Patient/gone"}},
            {"resource": {"no": "type"}},
        ],
    }
    path = tmp_path / "bundle.json.gz"  # one line: read as NDJSON, as the job reads it
    with gzip.open(path, "wt") as out:
        json.dump(bundle, out)
    uri = f"file:{path}"
    refs = [("urn:uuid:p-1", "Patient/p1"), ("urn:uuid:e-1", "Encounter/e1")]
    assert list(resources_of(uri, FhirConfig())) == [
        (uri, "line 1 entry 0", "Patient", '{"resourceType": "Patient", "id": "p1"}', refs, None),
        (uri, "line 1 entry 1", "Encounter", '{"resourceType": "Encounter", "id": "e1"}', refs, None),
        (
            uri,
            "line 1 entry 2 entry 0",
            "Location",
            '{"resourceType": "Location", "id": "loc", "name": "Ward"}',
            [("urn:uuid:in-1", "Location/loc")],
            None,
        ),
        (uri, "line 1 entry 4", None, None, [], "bad_bundle_entry"),
    ]


def test_ndjson_keeps_each_line_as_written_and_names_what_is_no_resource(tmp_path: Path) -> None:
    path = tmp_path / "mixed.ndjson"
    path.write_text('{"resourceType":"Condition","id":"c1"}\n{"id": "x"}\n{broken\n')
    uri = f"file:{path}"
    assert list(resources_of(uri, FhirConfig())) == [
        (uri, "line 1", "Condition", '{"resourceType":"Condition","id":"c1"}', [], None),
        (uri, "line 2", None, None, [], "not_a_fhir_resource"),
        (uri, "line 3", None, None, [], "malformed_json"),
    ]
    gone = f"file:{tmp_path / 'gone.json'}"
    assert list(resources_of(gone, FhirConfig())) == [(gone, "file", None, None, [], "unreadable_file")]
