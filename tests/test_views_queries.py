"""The ready queries that join the view tables, checked against plain Python over the bulk export of 10 patients.

The real job (Spark + Hudi) runs over the whole export with every view the queries read, each into its table
`bronze_<view>`; the tables are read back without a JVM, and each ready query runs both over them in DuckDB
(`query_tables`) and end to end through `bronze-encounter query --name` on the warehouse. The expected answers are
computed here from the NDJSON, resolving the export's conditional references by identifier by hand.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from helpers import job_config

from benchmarks.shared_data import BULK
from streaming.cli import main
from streaming.config import JobConfig
from streaming.ops import ready_queries as queries
from streaming.ops.query import query, query_tables
from streaming.viewdef.shipped import SHIPPED_VIEWS

# The class labels the queries group by, written out here (not read from streaming.fhir.mapping).
LABELS = {"AMB": "Outpatient-Ambulatory", "IMP": "Inpatient", "EMER": "Emergency", "HH": "Home health", "VR": "Virtual"}
VIEW_QUERIES = [q for q in queries.QUERIES if q.views]
Resource = dict[str, Any]


def ndjson(kind: str) -> list[Resource]:
    text = (BULK / f"{kind}.000.ndjson").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _token(reference: Resource) -> str | None:
    """What a reference names by identifier: Reference.identifier, or a conditional reference's `system|value`."""
    identifier = reference.get("identifier") or {}
    if identifier.get("system") and identifier.get("value"):
        return f"{identifier['system']}|{identifier['value']}"
    found = re.match(r"[A-Za-z]+\?identifier=(.*)", reference.get("reference") or "")
    return found.group(1) if found else None


class Index:
    """Resources of one type by id and by every identifier `system|value`: how a reference is resolved here."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.by_id = {r["id"]: r for r in ndjson(kind)}
        self.by_token = {f"{i['system']}|{i['value']}": r for r in self.by_id.values() for i in r.get("identifier", [])}

    def resolve(self, reference: Resource | None) -> Resource | None:
        if not reference:
            return None
        text = reference.get("reference") or ""
        if text.startswith(f"{self.kind}/"):
            return self.by_id.get(text.split("/", 1)[1])
        token = _token(reference)
        return self.by_token.get(token) if token else None


@dataclass(frozen=True)
class Stay:
    id: str
    status: str
    label: str
    patient: str | None
    practitioner: Resource | None
    location: Resource | None
    start: datetime | None
    end: datetime | None

    def hours(self) -> float | None:
        if self.start and self.end and self.end >= self.start:
            return (self.end - self.start).total_seconds() / 3600
        return None


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text).astimezone(UTC) if text else None


@pytest.fixture(scope="module")
def stays() -> list[Stay]:
    practitioners, locations = Index("Practitioner"), Index("Location")
    out = []
    for e in ndjson("Encounter"):
        individuals = [p.get("individual") or {} for p in e.get("participant", [])]
        doctor = next((i for i in individuals if (i.get("reference") or "").startswith("Practitioner")), None)
        period = e.get("period") or {}
        out.append(
            Stay(
                id=e["id"],
                status=e["status"],
                label=LABELS[e["class"]["code"]],  # KeyError: a class this test does not know
                patient=(e.get("subject") or {}).get("reference"),
                practitioner=practitioners.resolve(doctor),
                location=locations.resolve(e["location"][0]["location"] if e.get("location") else None),
                start=_time(period.get("start")),
                end=_time(period.get("end")),
            )
        )
    assert all(s.practitioner and s.location for s in out)  # every conditional reference resolves in this export
    return out


def _happened(s: Stay) -> bool:
    return s.status not in ("cancelled", "entered-in-error")


def _readmitted(s: Stay, stays: list[Stay]) -> bool:
    assert s.end is not None
    return any(
        o.id != s.id and o.label == "Inpatient" and _happened(o) and o.patient == s.patient and o.start is not None
        and s.end < o.start <= s.end + timedelta(days=30)
        for o in stays
    )  # fmt: skip


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _name(r: Resource) -> str:
    name = r["name"][0]
    return " ".join(p for p in [*name.get("prefix", []), *name.get("given", []), name.get("family", "")] if p)


def expected_physicians(stays: list[Stay]) -> dict[Any, tuple[Any, ...]]:
    practitioners = Index("Practitioner")
    roles: dict[str, list[Resource]] = defaultdict(list)
    for role in ndjson("PractitionerRole"):
        found = practitioners.resolve(role.get("practitioner"))
        if found:
            roles[found["id"]].append(role)
    groups: dict[str, list[Stay]] = defaultdict(list)
    for s in stays:
        if _happened(s) and s.practitioner:
            groups[s.practitioner["id"]].append(s)
    out: dict[Any, tuple[Any, ...]] = {}
    for pid, group in groups.items():
        p = practitioners.by_id[pid]
        npi = next(i["value"] for i in p["identifier"] if i["system"] == "http://hl7.org/fhir/sid/us-npi")
        role = min((c["coding"][0]["display"] for r in roles[pid] for c in r["code"][:1]), default=None)
        specialty = min((c["coding"][0]["display"] for r in roles[pid] for c in r["specialty"][:1]), default=None)
        admissions = [s for s in group if s.label == "Inpatient" and s.patient and s.start and s.end]
        out[pid] = (
            _name(p),
            npi,
            role,
            specialty,
            len(group),
            len({s.patient for s in group if s.patient}),
            _mean([h for s in group if (h := s.hours()) is not None]),
            len(admissions),
            sum(_readmitted(s, stays) for s in admissions),
        )
    return out


def expected_departments(stays: list[Stay]) -> dict[Any, tuple[Any, ...]]:
    organizations = Index("Organization")
    groups: dict[str, list[Stay]] = defaultdict(list)
    for s in stays:
        if _happened(s) and s.location:
            groups[s.location["id"]].append(s)
    out: dict[Any, tuple[Any, ...]] = {}
    for lid, group in groups.items():
        location = group[0].location
        assert location is not None
        organization = organizations.resolve(location.get("managingOrganization"))
        hours = [h for s in group if (h := s.hours()) is not None]
        out[lid] = (
            location.get("name"),
            organization["name"] if organization else None,
            len(group),
            len({s.patient for s in group if s.patient}),
            sum(s.label == "Inpatient" for s in group),
            _mean(hours),
            sum(hours) if hours else None,
        )
    return out


def expected_diagnoses(stays: list[Stay]) -> dict[Any, tuple[Any, ...]]:
    by_id = {s.id: s for s in stays if _happened(s)}
    groups: dict[tuple[Any, ...], list[tuple[Stay, Resource]]] = defaultdict(list)
    for c in ndjson("Condition"):
        stay = by_id.get((c.get("encounter") or {}).get("reference", "").removeprefix("Encounter/"))
        verification = (c.get("verificationStatus") or {"coding": [{}]})["coding"][0].get("code")
        if stay is None or verification in ("entered-in-error", "refuted"):
            continue
        coding = c["code"]["coding"][0]
        key = (stay.label, coding.get("system"), coding.get("code"), coding.get("display") or c["code"].get("text"))
        groups[key].append((stay, c))
    return {
        key: (len(pairs), len({s.id for s, _ in pairs}), len({s.patient for s, _ in pairs if s.patient}))
        for key, pairs in groups.items()
    }


# Per query: the plain-Python answer, its key columns and its figures; rounded figures may be off by half a unit.
READY = {
    "physician_performance": (
        expected_physicians,
        ("practitioner_id",),
        (
            "name",
            "npi",
            "role",
            "specialty",
            "encounters",
            "patients",
            "avg_stay_hours",
            "admissions",
            "readmissions_30d",
        ),
    ),
    "department_performance": (
        expected_departments,
        ("location_id",),
        ("location", "organization", "encounters", "patients", "inpatient_encounters", "avg_stay_hours", "total_hours"),
    ),
    "diagnoses_by_encounter_type": (
        expected_diagnoses,
        ("encounter_type", "code_system", "code", "diagnosis"),
        ("diagnoses", "encounters", "patients"),
    ),
}
ROUNDED = {"avg_stay_hours": 0.05, "total_hours": 0.05}


def _same(figure: str, answered: Any, expected: Any) -> bool:
    if answered is None or expected is None or isinstance(expected, str):
        return bool(answered == expected)
    return math.isclose(answered, expected, rel_tol=1e-9, abs_tol=ROUNDED.get(figure, 0) + 1e-9)


def mismatches(rows: list[dict[str, Any]], name: str, stays: list[Stay]) -> list[str]:
    compute, keys, figures = READY[name]
    want = compute(stays)
    got = {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: tuple(r[f] for f in figures) for r in rows}
    assert len(got) == len(rows), "a key answered twice"
    problems = [f"{key}: expected, not answered" for key in want.keys() - got.keys()]
    problems += [f"{key}: answered, not expected" for key in got.keys() - want.keys()]
    for key in want.keys() & got.keys():
        for figure, answered, expected in zip(figures, got[key], want[key], strict=True):
            if not _same(figure, answered, expected):
                problems.append(f"{key} {figure}: {answered}, expected {expected}")
    return problems


# -- pure ------------------------------------------------------------------------------------------------------------


def test_every_view_query_names_the_view_tables_it_reads() -> None:
    assert [q.name for q in VIEW_QUERIES] == list(READY)
    for q in VIEW_QUERIES:
        named = set(re.findall(r"\bbronze\.(bronze_[a-z_]+)", q.sql))
        assert named == {"bronze_encounter", *(f"bronze_{view}" for view in q.views)}, q.name
        assert set(q.views) <= set(SHIPPED_VIEWS), q.name


# -- slow: the tables, then every query ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> JobConfig:
    """The job over the whole export, running every view the ready queries read: each lands in its Hudi table."""
    from streaming.pipeline import job

    views = sorted({v for q in VIEW_QUERIES for v in q.views})
    config = job_config(tmp_path_factory.mktemp("view-queries"), BULK, **{"views.run": ",".join(["encounter", *views])})
    assert job.run(config, once=True, spark=spark).rows_written == 1215  # the export's Encounters, nothing else
    return config


@pytest.fixture(scope="module")
def tables(written: JobConfig) -> dict[str, pa.Table]:
    """bronze_encounter and each view's table as the job wrote them, read without a JVM (hudi-rs)."""
    views = sorted({v for q in VIEW_QUERIES for v in q.views})
    return {
        name: query(written, f"SELECT * FROM {name}") for name in ["bronze_encounter", *(f"bronze_{v}" for v in views)]
    }


@pytest.mark.spark
@pytest.mark.parametrize("name", list(READY))
def test_query_by_name_answers_from_the_jobs_tables_as_plain_python(
    written: JobConfig, stays: list[Stay], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end: the job wrote the view tables; `bronze-encounter query --name` reads them from the warehouse."""
    args = ["query", "--source", written.source, "--warehouse", written.warehouse, "--name", name, "--format", "json"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and mismatches(rows, name, stays) == []


@pytest.mark.spark
@pytest.mark.parametrize("name", list(READY))
def test_view_queries_answer_as_plain_python(tables: dict[str, pa.Table], stays: list[Stay], name: str) -> None:
    sql = next(q.sql for q in VIEW_QUERIES if q.name == name)
    rows = query_tables(tables, sql).to_pylist()
    assert rows and mismatches(rows, name, stays) == []


@pytest.mark.spark
def test_the_export_exercises_what_the_queries_count(tables: dict[str, pa.Table], stays: list[Stay]) -> None:
    physicians = expected_physicians(stays)
    assert len(physicians) > 1 and sum(p[-1] for p in physicians.values()) > 0  # some readmissions to count
    assert len({p[2] for p in physicians.values()}) >= 1
    departments = expected_departments(stays)
    names = [d[0] for d in departments.values()]
    assert len(names) > len(set(names))  # Locations that share a name: joining on the display would merge them


@pytest.mark.spark
@pytest.mark.parametrize("name", list(READY))
def test_view_queries_run_on_empty_tables(tables: dict[str, pa.Table], name: str) -> None:
    sql = next(q.sql for q in VIEW_QUERIES if q.name == name)
    assert query_tables({n: t.schema.empty_table() for n, t in tables.items()}, sql).num_rows == 0
