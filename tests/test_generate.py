"""Tests for the synthetic FHIR Encounter generator, checked against what is parsed back from disk."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streaming.generate import HOSPITALS, GeneratedSet, encounter, generate

ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
CLASS_CODES = {"AMB", "IMP", "EMER", "HH", "VR"}
STATUSES = {"finished", "in-progress", "cancelled"}

Encounters = list[dict[str, Any]]

# 6 ndjson files x 60 + 2 single .json files = 362 encounters: every hospital, class and status shows up.
LARGE_FILES = 8
LARGE_PER_FILE = 60
LARGE_TOTAL = 6 * LARGE_PER_FILE + 2


def _read_file(path: Path) -> Encounters:
    """Parse one generated file into its encounters, whatever its format."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return [json.loads(text)]
    return [json.loads(line) for line in text.splitlines()]


def _read_all(generated: GeneratedSet) -> Encounters:
    """Parse every written file in writing order."""
    return [resource for path in generated.files for resource in _read_file(path)]


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Map each file name in the folder to its bytes."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def large_set(tmp_path_factory: pytest.TempPathFactory) -> GeneratedSet:
    """A set large enough that every hospital, class and status shows up."""
    return generate(tmp_path_factory.mktemp("large"), files=LARGE_FILES, per_file=LARGE_PER_FILE, seed=42)


@pytest.fixture(scope="module")
def large_encounters(large_set: GeneratedSet) -> Encounters:
    """The encounters of the large set, parsed back from disk."""
    return _read_all(large_set)


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", files=5, per_file=7, seed=123)
    second = generate(tmp_path / "b", files=5, per_file=7, seed=123)

    first_bytes = _snapshot(tmp_path / "a")
    assert first_bytes == _snapshot(tmp_path / "b")
    assert len(first_bytes) == 5
    assert first.encounter_ids == second.encounter_ids
    assert dict(first.per_hospital) == dict(second.per_hospital)


def test_rerun_into_same_folder_overwrites_with_same_bytes(tmp_path: Path) -> None:
    generate(tmp_path, files=4, per_file=3, seed=9)
    before = _snapshot(tmp_path)
    generate(tmp_path, files=4, per_file=3, seed=9)

    assert _snapshot(tmp_path) == before


def test_other_seed_gives_other_content(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", files=2, per_file=5, seed=1)
    second = generate(tmp_path / "b", files=2, per_file=5, seed=2)

    assert first.files[0].read_bytes() != second.files[0].read_bytes()
    assert not set(first.encounter_ids) & set(second.encounter_ids)


def test_file_names_suffixes_and_order(tmp_path: Path) -> None:
    generated = generate(tmp_path, files=9, per_file=2, seed=77)

    expected = [f"encounters-77-{i:05d}.json" if i % 4 == 3 else f"encounters-77-{i:05d}.ndjson" for i in range(9)]
    assert [path.name for path in generated.files] == expected
    assert all(path.parent == tmp_path for path in generated.files)
    assert sorted(os.listdir(tmp_path)) == sorted(expected)


def test_counts_match_files_ids_and_hospitals(tmp_path: Path) -> None:
    generated = generate(tmp_path, files=7, per_file=5, seed=5)

    per_file_counts = [len(_read_file(path)) for path in generated.files]
    assert per_file_counts == [5, 5, 5, 1, 5, 5, 5]
    assert sum(per_file_counts) == 31
    assert len(generated.encounter_ids) == 31
    assert sum(generated.per_hospital.values()) == 31


def test_encounter_ids_unique_and_in_writing_order(large_set: GeneratedSet, large_encounters: Encounters) -> None:
    parsed_ids = [resource["id"] for resource in large_encounters]

    assert len(parsed_ids) == LARGE_TOTAL
    assert parsed_ids == list(large_set.encounter_ids)
    assert len(set(parsed_ids)) == LARGE_TOTAL
    for encounter_id in parsed_ids:
        assert uuid.UUID(encounter_id).version == 4


def test_ndjson_lines_are_compact_encounter_objects(large_set: GeneratedSet) -> None:
    ndjson_files = [path for path in large_set.files if path.suffix == ".ndjson"]
    assert len(ndjson_files) == 6

    for path in ndjson_files:
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n")
        lines = text.split("\n")[:-1]
        assert len(lines) == LARGE_PER_FILE
        for line in lines:
            resource = json.loads(line)
            assert isinstance(resource, dict)
            assert resource["resourceType"] == "Encounter"
            assert line == json.dumps(resource, separators=(",", ":"))


def test_json_files_are_pretty_single_resources(large_set: GeneratedSet) -> None:
    json_files = [path for path in large_set.files if path.suffix == ".json"]
    assert [path.name for path in json_files] == ["encounters-42-00003.json", "encounters-42-00007.json"]

    for path in json_files:
        text = path.read_text(encoding="utf-8")
        resource = json.loads(text)
        assert isinstance(resource, dict)
        assert resource["resourceType"] == "Encounter"
        assert text == json.dumps(resource, indent=2) + "\n"
        assert text.startswith('{\n  "resourceType": "Encounter"')


def test_files_are_printable_ascii(large_set: GeneratedSet) -> None:
    for path in large_set.files:
        data = path.read_bytes()
        assert all(32 <= byte < 127 or byte == 10 for byte in data), path.name


def test_all_hospitals_occur_including_tricky_names(large_encounters: Encounters) -> None:
    displays = {resource["serviceProvider"]["display"] for resource in large_encounters}

    assert displays == set(HOSPITALS)
    assert any("'" in name for name in displays)
    assert any("/" in name for name in displays)
    assert any(" " in name for name in displays)


def test_hospital_names_are_printable_ascii() -> None:
    assert 6 <= len(HOSPITALS) <= 10
    assert len(set(HOSPITALS)) == len(HOSPITALS)
    assert all(name.isascii() and name.isprintable() and name.strip() == name for name in HOSPITALS)


def test_per_hospital_matches_service_provider_counts(large_set: GeneratedSet, large_encounters: Encounters) -> None:
    counted = Counter(resource["serviceProvider"]["display"] for resource in large_encounters)

    assert dict(large_set.per_hospital) == dict(counted)
    assert sum(counted.values()) == LARGE_TOTAL


def test_service_provider_reference_is_stable_per_hospital(large_encounters: Encounters) -> None:
    references: dict[str, set[str]] = {}
    for resource in large_encounters:
        provider = resource["serviceProvider"]
        references.setdefault(provider["display"], set()).add(provider["reference"])

    assert all(len(refs) == 1 for refs in references.values())
    distinct = {next(iter(refs)) for refs in references.values()}
    assert len(distinct) == len(HOSPITALS)
    assert all(ref.startswith("Organization/") for ref in distinct)


def test_periods_parse_and_end_not_before_start(large_encounters: Encounters) -> None:
    offsets: set[str] = set()
    for resource in large_encounters:
        period = resource["period"]
        start = datetime.fromisoformat(period["start"])
        assert start.tzinfo is not None
        offsets.add("Z" if period["start"].endswith("Z") else period["start"][-6:])
        if "end" in period:
            end = datetime.fromisoformat(period["end"])
            assert end.tzinfo is not None
            assert end >= start

    assert offsets == {"Z", "+00:00", "-05:00", "+02:00"}


def test_status_mix_and_in_progress_have_no_end(large_encounters: Encounters) -> None:
    statuses = Counter(resource["status"] for resource in large_encounters)

    assert set(statuses) == STATUSES
    assert statuses["finished"] > LARGE_TOTAL / 2
    for resource in large_encounters:
        if resource["status"] == "in-progress":
            assert "end" not in resource["period"]
        if resource["status"] == "finished":
            assert "end" in resource["period"]


def test_class_codes_from_allowed_set_with_ambulatory_most_common(large_encounters: Encounters) -> None:
    classes: Counter[str] = Counter()
    for resource in large_encounters:
        coding = resource["class"]
        assert isinstance(coding, dict)
        assert coding["system"] == ACT_CODE_SYSTEM
        assert coding["display"]
        classes[coding["code"]] += 1

    assert set(classes) == CLASS_CODES
    assert classes.most_common(1)[0][0] == "AMB"


def test_durations_fit_encounter_class(large_encounters: Encounters) -> None:
    seen_classes: set[str] = set()
    for resource in large_encounters:
        period = resource["period"]
        if "end" not in period:
            continue
        length = datetime.fromisoformat(period["end"]) - datetime.fromisoformat(period["start"])
        code = resource["class"]["code"]
        seen_classes.add(code)
        if code == "IMP":
            assert length >= timedelta(days=1)
        elif code == "AMB":
            assert timedelta(minutes=15) <= length <= timedelta(minutes=60)

    assert {"IMP", "AMB"} <= seen_classes


def test_type_is_snomed_codeable_concept(large_encounters: Encounters) -> None:
    for resource in large_encounters:
        assert len(resource["type"]) == 1
        concept = resource["type"][0]
        coding = concept["coding"][0]
        assert coding["system"] == "http://snomed.info/sct"
        assert coding["code"].isdigit()
        assert concept["text"] == coding["display"]


def test_subjects_are_patients_with_repeat_visits(large_encounters: Encounters) -> None:
    patients = Counter(resource["subject"]["reference"] for resource in large_encounters)

    for reference in patients:
        prefix, _, patient_id = reference.partition("/")
        assert prefix == "Patient"
        uuid.UUID(patient_id)
    assert max(patients.values()) >= 3
    assert len(patients) < LARGE_TOTAL


def test_participants_are_practitioners_with_known_roles(large_encounters: Encounters) -> None:
    roles: set[str] = set()
    for resource in large_encounters:
        assert resource["participant"]
        for participant in resource["participant"]:
            coding = participant["type"][0]["coding"][0]
            assert coding["system"] == PARTICIPATION_SYSTEM
            roles.add(coding["code"])
            assert participant["individual"]["reference"].startswith("Practitioner/")
            assert participant["individual"]["display"].startswith("Dr. ")
            assert participant["period"] == resource["period"]

    assert roles == {"PPRF", "ATND", "ADM"}


def test_locations_and_meta(large_encounters: Encounters) -> None:
    departments: set[str] = set()
    for resource in large_encounters:
        location = resource["location"][0]["location"]
        assert location["reference"].startswith("Location/")
        departments.add(location["display"])

        last_updated = resource["meta"]["lastUpdated"]
        assert last_updated.endswith(("Z", "+00:00"))
        assert datetime.fromisoformat(last_updated).utcoffset() == timedelta(0)
        assert resource["identifier"][0]["value"] == resource["id"]

    assert "Emergency Department" in departments
    assert len(departments) >= 5


def test_no_temp_files_left(large_set: GeneratedSet) -> None:
    folder = large_set.files[0].parent
    names = os.listdir(folder)

    assert not [name for name in names if name.startswith(".") or name.endswith(".tmp")]
    assert sorted(names) == sorted(path.name for path in large_set.files)


def test_failed_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        generate(tmp_path, files=2, per_file=2, seed=1)

    assert os.listdir(tmp_path) == []


def test_creates_missing_nested_output_folder(tmp_path: Path) -> None:
    out_dir = tmp_path / "landing" / "encounters"
    generated = generate(out_dir, files=1, per_file=3, seed=0)

    assert out_dir.is_dir()
    assert [path.name for path in generated.files] == ["encounters-0-00000.ndjson"]
    assert len(_read_file(generated.files[0])) == 3


@pytest.mark.parametrize(
    ("files", "per_file", "message"),
    [(0, 1, "files must be >= 1"), (-3, 1, "files must be >= 1"), (1, 0, "per_file must be >= 1")],
)
def test_bad_arguments_raise_value_error(tmp_path: Path, files: int, per_file: int, message: str) -> None:
    out_dir = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        generate(out_dir, files=files, per_file=per_file, seed=1)
    assert not out_dir.exists()


def test_encounter_is_deterministic_for_rng_state() -> None:
    first = encounter(random.Random(3), hospital=HOSPITALS[1])
    second = encounter(random.Random(3), hospital=HOSPITALS[1])
    other = encounter(random.Random(4), hospital=HOSPITALS[1])

    assert first == second
    assert first["id"] != other["id"]
    assert first["serviceProvider"]["display"] == "Mercy North/South Campus"
    assert first["serviceProvider"]["reference"] == other["serviceProvider"]["reference"]


def test_encounter_rejects_empty_hospital() -> None:
    with pytest.raises(ValueError, match="hospital"):
        encounter(random.Random(0), hospital="")


def test_generated_set_is_frozen_and_read_only(large_set: GeneratedSet) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        large_set.files = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        large_set.per_hospital["X"] = 1  # type: ignore[index]
    assert isinstance(hash(large_set), int)

    source = {"A": 1}
    result = GeneratedSet(files=(), encounter_ids=(), per_hospital=source)
    source["A"] = 2
    assert dict(result.per_hospital) == {"A": 1}
    assert dict(GeneratedSet(files=(), encounter_ids=()).per_hospital) == {}
