"""Seeded generator of realistic synthetic FHIR R4 Encounter files for the bronze ingestion pipeline."""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

HOSPITALS: tuple[str, ...] = (
    "St. Mary's Medical Center",
    "Mercy North/South Campus",
    "Riverside General Hospital",
    "Lakeview Children's Hospital",
    "Northwestern Regional Medical Center",
    "Cedar Valley Community Hospital",
    "Bayview University Hospital",
    "Green Hills Rehabilitation Center",
)

# Relative encounter volume per hospital (same order as HOSPITALS): big centres see more traffic.
_HOSPITAL_WEIGHTS: tuple[int, ...] = (18, 14, 16, 8, 15, 10, 12, 7)

# Fixed namespace so patient, practitioner, location and organization ids are stable across runs.
_NAMESPACE = uuid.UUID("5b0c6a3e-2f64-4d8e-9a51-0c1f2e7d9b44")

_ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_PARTICIPATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_SNOMED_SYSTEM = "http://snomed.info/sct"
_IDENTIFIER_SYSTEM = "https://github.com/synthetichealth/synthea"

# v3-ActCode encounter classes: code -> (display, relative weight).
_CLASSES: dict[str, tuple[str, int]] = {
    "AMB": ("ambulatory", 60),
    "EMER": ("emergency", 14),
    "IMP": ("inpatient encounter", 12),
    "VR": ("virtual", 8),
    "HH": ("home health", 6),
}

_CLASS_WEIGHTS: dict[str, int] = {code: weight for code, (_, weight) in _CLASSES.items()}

# SNOMED CT encounter types per class: (code, display).
_TYPES: dict[str, tuple[tuple[str, str], ...]] = {
    "AMB": (
        ("185349003", "Encounter for check up (procedure)"),
        ("162673000", "General examination of patient (procedure)"),
        ("185345009", "Encounter for symptom (procedure)"),
        ("390906007", "Follow-up encounter (procedure)"),
        ("424441002", "Prenatal initial visit (regime/therapy)"),
    ),
    "EMER": (
        ("50849002", "Emergency room admission (procedure)"),
        ("4525004", "Emergency department patient visit (procedure)"),
    ),
    "IMP": (
        ("183452005", "Emergency hospital admission (procedure)"),
        ("32485007", "Hospital admission (procedure)"),
        ("305408004", "Admission to surgical department (procedure)"),
    ),
    "VR": (("448337001", "Telemedicine consultation with patient (procedure)"),),
    "HH": (("439708006", "Home visit (procedure)"),),
}

# Departments where each class of encounter takes place.
_DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "AMB": ("Outpatient Clinic", "Cardiology Clinic", "Family Medicine", "Orthopedics Clinic", "Dermatology"),
    "EMER": ("Emergency Department",),
    "IMP": ("Cardiology Ward", "General Medicine Ward", "Surgical Ward", "Intensive Care Unit"),
    "VR": ("Telehealth Services",),
    "HH": ("Home Health Services",),
}

_PARTICIPATION_DISPLAYS: dict[str, str] = {
    "PPRF": "primary performer",
    "ATND": "attender",
    "ADM": "admitter",
}

# Status -> relative weight: most encounters are closed, a few are still open or were called off.
_STATUSES: dict[str, int] = {"finished": 85, "in-progress": 10, "cancelled": 5}

# (label, offset) pairs; "Z" and "+00:00" are both UTC but written differently, as real feeds do.
_OFFSETS: tuple[tuple[str, timedelta], ...] = (
    ("Z", timedelta(0)),
    ("+00:00", timedelta(0)),
    ("-05:00", timedelta(hours=-5)),
    ("+02:00", timedelta(hours=2)),
)

_FIRST_NAMES: tuple[str, ...] = ("Anna", "James", "Maria", "Robert", "Linda", "Michael", "Aisha", "Kenji")
_LAST_NAMES: tuple[str, ...] = ("Kowalski", "Nguyen", "Garcia", "O'Brien", "Smith", "Okafor", "Patel")

_PATIENT_POOL_SIZE = 150
_PRACTITIONERS_PER_HOSPITAL = 6
_FIRST_DAY = datetime(2023, 1, 1)
_DAYS_SPAN = 730


def _stable_id(*parts: str) -> str:
    """Return a UUID string derived from the parts, identical in every run."""
    return str(uuid.uuid5(_NAMESPACE, "|".join(parts)))


_PATIENT_IDS: tuple[str, ...] = tuple(_stable_id("patient", str(i)) for i in range(_PATIENT_POOL_SIZE))


def _practitioner(hospital: str, index: int) -> tuple[str, str]:
    """Return (id, display) of the index-th practitioner working at the hospital."""
    seed = uuid.uuid5(_NAMESPACE, f"practitioner|{hospital}|{index}").int
    first = _FIRST_NAMES[seed % len(_FIRST_NAMES)]
    last = _LAST_NAMES[(seed // len(_FIRST_NAMES)) % len(_LAST_NAMES)]
    return _stable_id("practitioner", hospital, str(index)), f"Dr. {first} {last}"


def _format_datetime(moment: datetime, label: str) -> str:
    """Format an aware datetime as a FHIR dateTime, writing UTC as 'Z' when the label asks for it."""
    text = moment.isoformat(timespec="seconds")
    return text.removesuffix("+00:00") + "Z" if label == "Z" else text


def _weighted(rng: random.Random, weights: Mapping[str, int]) -> str:
    """Pick one key of the mapping with probability proportional to its weight."""
    return rng.choices(tuple(weights), weights=tuple(weights.values()))[0]


def _duration(rng: random.Random, class_code: str) -> timedelta:
    """Return a realistic length of stay for the encounter class."""
    if class_code == "IMP":
        return timedelta(days=rng.randint(1, 9), hours=rng.randint(0, 23), minutes=rng.randint(0, 59))
    if class_code == "EMER":
        return timedelta(hours=rng.randint(1, 7), minutes=rng.randint(0, 59))
    if class_code == "HH":
        return timedelta(minutes=rng.randint(30, 90))
    if class_code == "VR":
        return timedelta(minutes=rng.randint(10, 40))
    return timedelta(minutes=rng.randint(15, 60))


def _start(rng: random.Random, class_code: str, tz: timezone) -> datetime:
    """Return a local start time: planned visits in office hours, emergencies and admissions at any hour."""
    day = _FIRST_DAY + timedelta(days=rng.randrange(_DAYS_SPAN))
    if class_code in ("EMER", "IMP"):
        clock = timedelta(minutes=rng.randrange(24 * 60))
    else:
        clock = timedelta(hours=rng.randint(8, 16), minutes=rng.choice((0, 15, 30, 45)))
    return (day + clock).replace(tzinfo=tz)


def _participant(
    rng: random.Random, hospital: str, code: str, period: dict[str, str], used: set[int]
) -> dict[str, Any]:
    """Build one participant entry with a practitioner of the hospital not yet used in the encounter."""
    index = rng.choice([i for i in range(_PRACTITIONERS_PER_HOSPITAL) if i not in used])
    used.add(index)
    practitioner_id, display = _practitioner(hospital, index)
    role = _PARTICIPATION_DISPLAYS[code]
    coding = {"system": _PARTICIPATION_SYSTEM, "code": code, "display": role}
    return {
        "type": [{"coding": [coding], "text": role}],
        "period": dict(period),
        "individual": {"reference": f"Practitioner/{practitioner_id}", "display": display},
    }


def encounter(rng: random.Random, *, hospital: str) -> dict[str, Any]:
    """Return one Synthea-shaped FHIR R4 Encounter at the hospital, drawing every choice from rng."""
    if not hospital:
        raise ValueError("hospital must be a non-empty name")
    encounter_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    class_code = _weighted(rng, _CLASS_WEIGHTS)
    status = _weighted(rng, _STATUSES)
    label, offset = rng.choice(_OFFSETS)
    start = _start(rng, class_code, timezone(offset))
    end = start + _duration(rng, class_code)

    period = {"start": _format_datetime(start, label)}
    if status == "finished":
        period["end"] = _format_datetime(end, label)
    last_updated = (end if status == "finished" else start) + timedelta(
        minutes=rng.randint(1, 180), milliseconds=rng.randrange(1000)
    )
    last_updated_text = last_updated.astimezone(UTC).isoformat(timespec="milliseconds")
    if rng.random() < 0.5:
        last_updated_text = last_updated_text.removesuffix("+00:00") + "Z"

    type_code, type_display = rng.choice(_TYPES[class_code])
    # Skewed draw so a few patients are frequent visitors, as in real populations.
    patient_id = _PATIENT_IDS[int(len(_PATIENT_IDS) * rng.random() ** 2)]
    department = rng.choice(_DEPARTMENTS[class_code])

    used: set[int] = set()
    participants = [_participant(rng, hospital, "PPRF", period, used)]
    if class_code == "IMP":
        participants.append(_participant(rng, hospital, "ADM", period, used))
        participants.append(_participant(rng, hospital, "ATND", period, used))
    elif class_code == "EMER" and rng.random() < 0.5:
        participants.append(_participant(rng, hospital, "ATND", period, used))

    return {
        "resourceType": "Encounter",
        "id": encounter_id,
        "meta": {"lastUpdated": last_updated_text},
        "identifier": [{"use": "official", "system": _IDENTIFIER_SYSTEM, "value": encounter_id}],
        "status": status,
        "class": {"system": _ACT_CODE_SYSTEM, "code": class_code, "display": _CLASSES[class_code][0]},
        "type": [
            {
                "coding": [{"system": _SNOMED_SYSTEM, "code": type_code, "display": type_display}],
                "text": type_display,
            }
        ],
        "subject": {"reference": f"Patient/{patient_id}"},
        "participant": participants,
        "period": period,
        "location": [
            {
                "location": {
                    "reference": f"Location/{_stable_id('location', hospital, department)}",
                    "display": department,
                }
            }
        ],
        "serviceProvider": {
            "reference": f"Organization/{_stable_id('organization', hospital)}",
            "display": hospital,
        },
    }


def _empty_counts() -> Mapping[str, int]:
    """Return an empty read-only hospital count mapping."""
    return MappingProxyType({})


@dataclass(frozen=True)
class GeneratedSet:
    """What generate() wrote: the files, the encounter ids in writing order and encounters per hospital."""

    files: tuple[Path, ...]
    encounter_ids: tuple[str, ...]
    # Read-only copy so the frozen instance cannot change; left out of the hash as it follows from the files.
    per_hospital: Mapping[str, int] = field(default_factory=_empty_counts, hash=False)

    def __post_init__(self) -> None:
        """Freeze the collections so callers cannot mutate the result after the fact."""
        object.__setattr__(self, "files", tuple(self.files))
        object.__setattr__(self, "encounter_ids", tuple(self.encounter_ids))
        object.__setattr__(self, "per_hospital", MappingProxyType(dict(self.per_hospital)))


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a dot-prefixed temp name then rename, so a folder listing never sees a partial file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    # 0o666 filtered by the umask, like open(); mkstemp's 0o600 would hide the files from other readers.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def generate(out_dir: Path, *, files: int, per_file: int, seed: int) -> GeneratedSet:
    """Write a deterministic set of Encounter .ndjson files, every 4th one a pretty single-resource .json."""
    if files < 1:
        raise ValueError(f"files must be >= 1, got {files}")
    if per_file < 1:
        raise ValueError(f"per_file must be >= 1, got {per_file}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    rng = random.Random(seed)
    written: list[Path] = []
    ids: list[str] = []
    seen: set[str] = set()
    per_hospital = dict.fromkeys(HOSPITALS, 0)

    for index in range(files):
        single = index % 4 == 3
        batch: list[dict[str, Any]] = []
        for _ in range(1 if single else per_file):
            hospital = rng.choices(HOSPITALS, weights=_HOSPITAL_WEIGHTS)[0]
            resource = encounter(rng, hospital=hospital)
            while resource["id"] in seen:  # a 122-bit collision is near impossible, but ids must be unique
                resource = encounter(rng, hospital=hospital)
            seen.add(resource["id"])
            ids.append(resource["id"])
            per_hospital[hospital] += 1
            batch.append(resource)

        if single:
            path = out_dir / f"encounters-{seed}-{index:05d}.json"
            text = json.dumps(batch[0], indent=2) + "\n"
        else:
            path = out_dir / f"encounters-{seed}-{index:05d}.ndjson"
            text = "".join(json.dumps(item, separators=(",", ":")) + "\n" for item in batch)
        _write_atomically(path, text.encode("ascii"))
        written.append(path)

    counts = {name: count for name, count in per_hospital.items() if count}
    return GeneratedSet(files=tuple(written), encounter_ids=tuple(ids), per_hospital=counts)
