"""`query` (hudi-rs + DuckDB, no JVM) and the ready queries (docs/reference.md), checked against plain Python."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from helpers import copy_samples, job_config, table_marker

from streaming.adapters import aws
from streaming.ops import ready_queries as queries
from streaming.ops.query import QueryError, TableUnreadable, columns_used, query, table_schemas
from streaming.ops.sql_output import render

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference.md"
TABLES = ("bronze_encounter", "bronze_encounter_ingest_log", "bronze_encounter_quarantine")
# The class labels analysts group by, written out here so the test does not lean on streaming.fhir.mapping.
LABELS = {
    "AMB": "Outpatient-Ambulatory",
    "IMP": "Inpatient",
    "ACUTE": "Inpatient",
    "NONAC": "Inpatient",
    "EMER": "Emergency",
}


# -- plain-Python answers, from the Encounters' JSON --------------------------------------------------------------


@pytest.fixture(scope="module")
def encounters(samples: Path) -> list[dict[str, Any]]:
    lines = (samples / "encounters.ndjson").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@dataclass(frozen=True)
class Stay:
    """One Encounter as the ready queries see it, read from its R4 or R5 JSON here (not by the job's mapping)."""

    id: str
    status: str | None
    label: str
    patient: str | None
    hospital: str
    department: str
    start: datetime | None
    end: datetime | None


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text).astimezone(UTC) if text else None


def stay(e: dict[str, Any]) -> Stay:
    r5 = isinstance(e["class"], list)  # R5: a list of CodeableConcepts and actualPeriod; R4: one Coding and period
    code = e["class"][0]["coding"][0]["code"] if r5 else e["class"]["code"]
    period = e.get("actualPeriod" if r5 else "period") or {}
    return Stay(
        id=e["id"],
        status=e.get("status"),
        label=LABELS[code],  # KeyError: the data holds a class this test does not know
        patient=(e.get("subject") or {}).get("reference"),
        hospital=e["serviceProvider"]["display"],
        department=e["location"][0]["location"]["display"],
        start=_time(period.get("start")),
        end=_time(period.get("end")),
    )


@pytest.fixture(scope="module")
def stays(encounters: list[dict[str, Any]]) -> list[Stay]:
    return [stay(e) for e in encounters]


def _happened(s: Stay) -> bool:
    return s.status not in ("cancelled", "entered-in-error")  # no status at all: it happened


def _minutes(s: Stay) -> float | None:
    """The stay's length, when it has a start and an end not before it."""
    return (s.end - s.start).total_seconds() / 60 if s.start and s.end and s.end >= s.start else None


def expected_durations(stays: list[Stay]) -> dict[str, tuple[int, float, float]]:
    minutes: dict[str, list[float]] = defaultdict(list)
    for s in stays:
        if s.status in ("finished", "completed") and (m := _minutes(s)) is not None:
            minutes[s.label].append(m)
    return {label: (len(m), sum(m) / len(m), max(m)) for label, m in minutes.items()}


def expected_readmissions(stays: list[Stay]) -> dict[str, tuple[int, int, float]]:
    inpatient = [s for s in stays if s.label == "Inpatient" and _happened(s) and s.patient and s.start]
    by_patient: dict[str | None, list[Stay]] = defaultdict(list)
    for s in inpatient:
        by_patient[s.patient].append(s)
    result: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in inpatient:
        if s.end is None:  # still in hospital: not an admission yet, but it can be another's readmission
            continue
        again = any(
            s.end < other.start <= s.end + timedelta(days=30)  # type: ignore[operator]
            for other in by_patient[s.patient]
            if other.id != s.id
        )
        counts = result[s.hospital]
        counts[0] += 1
        counts[1] += int(again)
    return {hospital: (n, r, r / n) for hospital, (n, r) in result.items()}


def expected_utilisation(stays: list[Stay]) -> dict[tuple[str, str], tuple[int, int, float | None]]:
    groups: dict[tuple[str, str], list[Stay]] = defaultdict(list)
    for s in stays:
        if _happened(s):
            groups[(s.hospital, s.department)].append(s)
    out: dict[tuple[str, str], tuple[int, int, float | None]] = {}
    for key, group in groups.items():
        minutes = [m for s in group if (m := _minutes(s)) is not None]
        patients = {s.patient for s in group if s.patient}  # one without a patient is no patient
        out[key] = (len(group), len(patients), sum(minutes) / 60 if minutes else None)
    return out


# Each ready query's answer in the plain-Python shape: its key columns, its figures, and how far each figure may
# be off because the SQL rounds it (avg_minutes and total_hours to 0.1, readmission_rate to 0.001).
READY: dict[str, tuple[Callable[[list[Stay]], dict[Any, tuple[Any, ...]]], tuple[str, ...], tuple[str, ...]]] = {
    "durations_by_type": (expected_durations, ("encounter_type",), ("encounters", "avg_minutes", "max_minutes")),
    "readmissions_30d": (
        expected_readmissions,
        ("hospital_name",),
        ("admissions", "readmissions_30d", "readmission_rate"),
    ),
    "utilisation": (expected_utilisation, ("hospital_name", "department"), ("encounters", "patients", "total_hours")),
}
ROUNDED = {"avg_minutes": 0.05, "total_hours": 0.05, "readmission_rate": 0.0005}


def mismatches(config: Any, name: str, stays: list[Stay], sql: str | None = None) -> list[str]:
    """Where the ready query `name` (or `sql` in its place) answers otherwise than plain Python on `stays`."""
    compute, keys, figures = READY[name]
    want = compute(stays)
    rows = query(config, sql or next(q.sql for q in queries.QUERIES if q.name == name)).to_pylist()
    got = {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: tuple(r[f] for f in figures) for r in rows}
    problems = [f"{key}: expected, not answered" for key in want.keys() - got.keys()]
    problems += [f"{key}: answered, not expected" for key in got.keys() - want.keys()]
    for key in want.keys() & got.keys():
        for figure, answered, expected in zip(figures, got[key], want[key], strict=True):
            same = (answered is None) == (expected is None) and (
                expected is None
                or math.isclose(answered, expected, rel_tol=1e-9, abs_tol=ROUNDED.get(figure, 0) + 1e-9)
            )
            if not same:
                problems.append(f"{key} {figure}: {answered}, expected {expected}")
    return problems


# -- the tables, written once by the real job ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthea(spark: Any, samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The Synthea NDJSON (and an empty file) ingested by the real job (Spark + Hudi) once for this module."""
    from streaming.pipeline import job

    root = tmp_path_factory.mktemp("query")
    copy_samples(samples, root / "landing", bundles=False)
    (root / "landing" / "empty.json").write_bytes(b"")  # one quarantined file, so all three tables exist
    config = job_config(root, root / "landing")
    summary = job.run(config, once=True, spark=spark)
    assert summary.rows_written == 3927
    return config


# Encounters the Synthea samples lack (all of theirs are finished, R4, AMB/IMP/EMER, none deleted, none ending before
# they start), each one changing some ready query's answer if the filter meant for it were dropped. Times are days
# after T0; patients p1-p5; two hospitals, two departments.
T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
NORTH, SOUTH = "Edge North", "Edge South"


def _edge(
    eid: str,
    status: str | None,
    code: str,
    patient: str | None,
    hospital: str,
    ward: str,
    start: timedelta | None,
    end: timedelta | None,
    *,
    r5: bool = False,
) -> dict[str, Any]:
    system = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    times = {
        k: (T0 + v).isoformat().replace("+00:00", "Z") for k, v in (("start", start), ("end", end)) if v is not None
    }
    e: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": eid,
        "meta": {"lastUpdated": "2024-06-01T00:00:00Z"},
        "class": [{"coding": [{"system": system, "code": code}]}] if r5 else {"system": system, "code": code},
        "actualPeriod" if r5 else "period": times,
        "location": [{"location": {"display": ward}}],
        "serviceProvider": {"display": hospital},
    }
    if status is not None:
        e["status"] = status
    if patient is not None:
        e["subject"] = {"reference": f"Patient/{patient}"}
    return e


D, H = timedelta(days=1), timedelta(hours=1)
EDGE_ENCOUNTERS = [
    # p1: IMP, readmitted 8 days later as ACUTE, which is readmitted exactly 30 days after its discharge by an R5
    # NONAC `completed` stay, which is readmitted by nothing: the stay after it is cancelled.
    _edge("e-imp-1", "finished", "IMP", "p1", NORTH, "Ward 1", 0 * D, 2 * D),
    _edge("e-acute-2", "finished", "ACUTE", "p1", NORTH, "Ward 1", 10 * D, 12 * D),
    _edge("e-nonac-3", "completed", "NONAC", "p1", SOUTH, "Ward 2", 42 * D, 43 * D, r5=True),
    _edge("e-cancelled-4", "cancelled", "IMP", "p1", NORTH, "Ward 1", 50 * D, 51 * D),
    _edge("e-amb-5", "finished", "AMB", "p1", NORTH, "Ward 1", 0 * D, H / 2),
    # p3: IMP, then a stay entered in error, then one still in progress (a readmission, not yet an admission).
    _edge("e-imp-6", "finished", "IMP", "p3", SOUTH, "Ward 2", 0 * D, 1 * D),
    _edge("e-error-7", "entered-in-error", "IMP", "p3", SOUTH, "Ward 2", 3 * D, 4 * D),
    _edge("e-ongoing-8", "in-progress", "IMP", "p3", SOUTH, "Ward 2", 20 * D, None),
    # p4: a stay ending before it starts, an ambulatory visit in progress with both times, one without a status.
    _edge("e-backwards-9", "finished", "IMP", "p4", NORTH, "Ward 2", 5 * D, 4 * D),
    _edge("e-ongoing-10", "in-progress", "AMB", "p4", NORTH, "Ward 1", 0 * D, H),
    _edge("e-no-status-11", None, "AMB", "p4", NORTH, "Ward 2", 1 * D, 1 * D + 2 * H),
    # p5: a stay without a start; two stays a second more than 30 days apart (no readmission).
    _edge("e-no-start-12", "finished", "IMP", "p5", NORTH, "Ward 1", None, 3 * D),
    _edge("e-imp-13", "finished", "IMP", "p5", SOUTH, "Ward 2", 0 * D, 1 * D),
    _edge("e-imp-14", "finished", "IMP", "p5", SOUTH, "Ward 2", 31 * D + timedelta(seconds=1), 32 * D),
    # No patient; p2: an emergency visit, and a stay a Bundle DELETE removes.
    _edge("e-no-patient-15", "finished", "IMP", None, SOUTH, "Ward 1", 0 * D, 2 * D),
    _edge("e-emer-16", "finished", "EMER", "p2", SOUTH, "Ward 2", 0 * D, 1.5 * H),
    _edge("e-deleted-17", "finished", "IMP", "p2", NORTH, "Ward 1", 0 * D, 1 * D),
]
DELETED = {"e-deleted-17"}


@pytest.fixture(scope="module")
def edges(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[Stay]]:
    """EDGE_ENCOUNTERS ingested by the real job, then a Bundle DELETE in a second run; with the stays that remain."""
    from streaming.pipeline import job

    root = tmp_path_factory.mktemp("edges")
    landing = root / "landing"
    landing.mkdir()
    (landing / "edges.ndjson").write_text("".join(json.dumps(e) + "\n" for e in EDGE_ENCOUNTERS))
    config = job_config(root, landing)
    first = job.run(config, once=True, spark=spark)
    assert (first.rows_written, first.rows_rejected) == (len(EDGE_ENCOUNTERS), 0)
    delete = {
        "resourceType": "Bundle",
        "type": "transaction",
        "meta": {"lastUpdated": "2024-06-02T00:00:00Z"},
        "entry": [{"request": {"method": "DELETE", "url": f"Encounter/{eid}"}} for eid in sorted(DELETED)],
    }
    (landing / "delete.json").write_text(json.dumps(delete))
    second = job.run(config, once=True, spark=spark)
    assert [b.stats.rows_deleted for b in second.batches] == [len(DELETED)]
    return config, [stay(e) for e in EDGE_ENCOUNTERS if e["id"] not in DELETED]


@pytest.mark.spark
def test_counts_per_hospital_equal_the_ndjson(synthea: Any, encounters: list[dict[str, Any]]) -> None:
    expected = Counter(e["serviceProvider"]["display"] for e in encounters)
    assert len(expected) == 118
    for table in ("bronze_encounter", "bronze.bronze_encounter", '"bronze"."bronze_encounter"'):
        result = query(synthea, f"SELECT hospital_name, count(*) AS n FROM {table} GROUP BY hospital_name")
        assert result.column_names == ["hospital_name", "n"]
        assert dict(zip(*result.to_pydict().values(), strict=True)) == expected


@pytest.mark.spark
def test_star_and_whole_rows_read_every_column(synthea: Any, encounters: list[dict[str, Any]]) -> None:
    everything = query(synthea, "SELECT * FROM bronze_encounter")
    assert everything.column_names == table_schemas(synthea)["bronze_encounter"].names
    assert sorted(everything.column("encounter_id").to_pylist()) == sorted(e["id"] for e in encounters)
    whole = query(synthea, "SELECT e FROM bronze_encounter AS e LIMIT 1")
    assert set(whole.column("e")[0].as_py()) == set(everything.column_names)


@pytest.mark.spark
def test_durations_by_type(synthea: Any, stays: list[Stay]) -> None:
    assert set(expected_durations(stays)) == set(LABELS.values())
    assert mismatches(synthea, "durations_by_type", stays) == []


@pytest.mark.spark
def test_readmissions_30d(synthea: Any, stays: list[Stay]) -> None:
    expected = expected_readmissions(stays)
    assert sum(n for n, _, _ in expected.values()) == 451  # the Synthea inpatient stays
    assert sum(r for _, r, _ in expected.values()) > 0
    assert mismatches(synthea, "readmissions_30d", stays) == []


@pytest.mark.spark
def test_utilisation(synthea: Any, stays: list[Stay]) -> None:
    assert mismatches(synthea, "utilisation", stays) == []


@pytest.mark.spark
@pytest.mark.parametrize("name", list(READY))
def test_ready_queries_leave_out_what_did_not_happen(edges: tuple[Any, list[Stay]], name: str) -> None:
    config, stays = edges
    assert mismatches(config, name, stays) == []


# Each exclusion in the ready SQL, taken out (or narrowed) as a regression would: the edge data must then give
# another answer. (query, text in its SQL, what the regression writes instead)
MUTATIONS = [
    ("durations_by_type", "WHERE status IN ('finished', 'completed')", "WHERE true"),  # cancelled, in progress
    ("durations_by_type", "('finished', 'completed')", "('finished')"),  # R5 `completed`
    ("durations_by_type", "AND discharge_time >= admission_time", ""),  # end before start
    ("readmissions_30d", "encounter_type = 'Inpatient'", "class_code = 'IMP'"),  # ACUTE, NONAC
    ("readmissions_30d", "encounter_type = 'Inpatient'", "true"),
    ("readmissions_30d", "NOT IN ('cancelled', 'entered-in-error')", "NOT IN ('entered-in-error')"),
    ("readmissions_30d", "NOT IN ('cancelled', 'entered-in-error')", "NOT IN ('cancelled')"),
    ("readmissions_30d", "AND patient_ref IS NOT NULL", ""),
    ("readmissions_30d", "AND admission_time IS NOT NULL", ""),
    ("readmissions_30d", "WHERE i.discharge_time IS NOT NULL", ""),  # in progress: no admission yet
    ("readmissions_30d", "AND r.encounter_id <> i.encounter_id", ""),  # a stay ending before it starts
    ("readmissions_30d", "r.admission_time <= i.discharge_time", "r.admission_time < i.discharge_time"),
    ("utilisation", "NOT is_deleted AND ", ""),  # tombstones
    ("utilisation", "NOT IN ('cancelled', 'entered-in-error')", "NOT IN ('entered-in-error')"),
    ("utilisation", "NOT IN ('cancelled', 'entered-in-error')", "NOT IN ('cancelled')"),
    ("utilisation", "coalesce(status, '')", "status"),  # no status: it happened
    ("utilisation", "CASE WHEN discharge_time >= admission_time", "CASE WHEN true"),  # end before start
]


@pytest.mark.spark
@pytest.mark.parametrize(("name", "text", "instead"), MUTATIONS)
def test_the_edge_data_tells_each_filter_from_its_absence(
    edges: tuple[Any, list[Stay]], name: str, text: str, instead: str
) -> None:
    config, stays = edges
    sql = next(q.sql for q in queries.QUERIES if q.name == name)
    assert text in sql, f"{name} no longer says {text!r}: update MUTATIONS"
    assert mismatches(config, name, stays, sql.replace(text, instead)) != [], f"{name} without {text!r}"


@pytest.mark.spark
def test_empty_schemas_match_the_written_tables(synthea: Any) -> None:
    """A table not written yet reads with the columns the job would write (drift here means update table_schemas)."""
    from hudi import HudiTableBuilder

    for name, schema in table_schemas(synthea).items():
        written = HudiTableBuilder.from_base_uri(synthea.table_uri(name)).build().get_schema_with_meta_fields()
        assert [(f.name, str(f.type)) for f in written] == [(f.name, str(f.type)) for f in schema], name


@pytest.mark.spark
def test_reads_an_s3a_warehouse(synthea: Any, s3_bucket: str, tmp_path: Path, encounters: list[dict[str, Any]]) -> None:
    s3 = aws.client("s3")
    table = Path(synthea.table_uri("bronze_encounter"))
    for path in table.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), s3_bucket, f"lake/bronze_encounter/{path.relative_to(table)}")
    config = job_config(tmp_path, tmp_path / "landing", warehouse=f"s3a://{s3_bucket}/lake")

    result = query(config, "SELECT hospital_name, count(*) AS n FROM bronze.bronze_encounter GROUP BY 1")
    assert dict(zip(*result.to_pydict().values(), strict=True)) == Counter(
        e["serviceProvider"]["display"] for e in encounters
    )
    # The log was not uploaded: it reads as empty, not as an error.
    assert query(config, "SELECT count(*) AS n FROM bronze_encounter_ingest_log").to_pylist() == [{"n": 0}]


# -- without a JVM --------------------------------------------------------------------------------------------------


def test_missing_tables_read_as_empty_with_their_columns(tmp_path: Path) -> None:
    """Inside a warehouse that holds a table, one not written yet reads as empty."""
    config = job_config(tmp_path, tmp_path / "landing")
    table_marker(config, "bronze_encounter_ingest_log")
    for name in ("bronze_encounter", "bronze_encounter_quarantine"):
        result = query(config, f"SELECT * FROM bronze.{name}")
        assert result.num_rows == 0
        assert result.column_names == table_schemas(config)[name].names
    assert query(config, "SELECT count(*) AS n FROM bronze_encounter_quarantine").to_pylist() == [{"n": 0}]


def test_bad_sql_and_unknown_tables_are_query_errors(tmp_path: Path) -> None:
    config = job_config(tmp_path, tmp_path / "landing")
    table_marker(config, "bronze_encounter_ingest_log")
    with pytest.raises(QueryError, match="syntax error"):
        query(config, "SELEC hospital_name FROM bronze_encounter")
    with pytest.raises(QueryError, match="no_such_table"):
        query(config, "SELECT * FROM no_such_table")
    with pytest.raises(QueryError, match="no_such_column"):
        query(config, "SELECT no_such_column FROM bronze_encounter")


def test_a_broken_table_is_named_in_the_error(tmp_path: Path) -> None:
    config = job_config(tmp_path, tmp_path / "landing")
    properties = Path(config.table_uri("bronze_encounter")) / ".hoodie" / "hoodie.properties"
    properties.parent.mkdir(parents=True)
    properties.write_text("not a table\n")
    with pytest.raises(TableUnreadable, match=r"table bronze_encounter at .* could not be read"):
        query(config, "SELECT count(*) FROM bronze_encounter")
    assert query(config, "SELECT count(*) AS n FROM bronze_encounter_quarantine").to_pylist() == [{"n": 0}]


def test_queries_run_on_empty_tables(tmp_path: Path) -> None:
    config = job_config(tmp_path, tmp_path / "landing")
    table_marker(config, "bronze_encounter_ingest_log")  # the ready queries read bronze_encounter only
    for q in queries.QUERIES:
        if not q.views:  # the view queries read tables only a job running those views writes: test_views_queries.py
            assert query(config, q.sql).num_rows == 0, q.name


def test_columns_used_is_a_superset_or_everything() -> None:
    con = duckdb.connect()
    used = columns_used(
        con,
        "WITH x AS (SELECT hospital_name, admission_time FROM bronze.bronze_encounter WHERE status = 'finished')"
        " SELECT hospital_name, count(*) FROM x JOIN bronze_encounter_quarantine q USING (batch_key)"
        " GROUP BY ALL ORDER BY 2",
    )
    assert used is not None
    assert {"hospital_name", "admission_time", "status", "batch_key"} <= used
    assert "resource_json" not in used
    for needs_everything in (
        "SELECT * FROM bronze_encounter",
        "SELECT count(*), e.* FROM bronze_encounter e GROUP BY ALL",
        "SELECT * EXCLUDE (resource_json) FROM bronze_encounter",
        "SELECT COLUMNS('.*_time') FROM bronze_encounter",
        "SELECT e FROM bronze_encounter e",
        "SELECT to_json(bronze_encounter) FROM bronze_encounter",
        "SELECT 1 FROM bronze_encounter NATURAL JOIN bronze_encounter_quarantine",
        "DESCRIBE bronze_encounter",
    ):
        assert columns_used(con, needs_everything) is None, needs_everything


# -- render ---------------------------------------------------------------------------------------------------------


def _sample_table() -> pa.Table:
    at = datetime(2024, 3, 1, 12, 30, 5, 250000, tzinfo=UTC)
    return pa.table(
        {
            "hospital": ['Mercy, "North"', "Sankt Jürgen 病院", None],
            "n": pa.array([3, 12000, None], pa.int64()),
            "share": [0.25, None, 1.5],
            "at": pa.array([at, None, at + timedelta(days=1)], pa.timestamp("us", tz="UTC")),
            "files": [["a.json", "b.json"], [], None],
            "ok": [True, False, None],
        }
    )


def test_render_json_parses_back_to_the_rows() -> None:
    table = _sample_table()
    rows = json.loads(render(table, "json"))
    assert rows == [
        {
            "hospital": 'Mercy, "North"',
            "n": 3,
            "share": 0.25,
            "at": "2024-03-01T12:30:05.250000+00:00",
            "files": ["a.json", "b.json"],
            "ok": True,
        },
        {"hospital": "Sankt Jürgen 病院", "n": 12000, "share": None, "at": None, "files": [], "ok": False},
        {
            "hospital": None,
            "n": None,
            "share": 1.5,
            "at": "2024-03-02T12:30:05.250000+00:00",
            "files": None,
            "ok": None,
        },
    ]
    assert [datetime.fromisoformat(r["at"]) for r in rows if r["at"]] == [
        v for v in table.column("at").to_pylist() if v
    ]
    assert json.loads(render(table.slice(0, 0), "json")) == []


def test_render_csv_parses_back_to_the_rows() -> None:
    parsed = list(csv.reader(io.StringIO(render(_sample_table(), "csv"))))
    assert parsed == [
        ["hospital", "n", "share", "at", "files", "ok"],
        ['Mercy, "North"', "3", "0.25", "2024-03-01T12:30:05.250000+00:00", '["a.json", "b.json"]', "true"],
        ["Sankt Jürgen 病院", "12000", "", "", "[]", "false"],
        ["", "", "1.5", "2024-03-02T12:30:05.250000+00:00", "", ""],
    ]


def test_render_table_aligns_columns() -> None:
    text = render(_sample_table(), "table")
    lines = text.splitlines()
    assert lines[-1] == "(3 rows)"
    header, rule, *body = lines[:-1]
    assert [c.strip() for c in header.split(" | ")] == ["hospital", "n", "share", "at", "files", "ok"]
    assert len(body) == 3
    # Every separator sits at the same display column (the CJK name is two columns per character).
    assert rule.count("+") == 5
    widths = [len(part) for part in rule.split("-+-")]
    for line in (header, *body):
        cells = line.split(" | ")
        assert len(cells) == 6
        for cell, width in zip(cells[:-1], widths[:-1], strict=True):
            wide = sum(1 for ch in cell if "\u4e00" <= ch <= "\u9fff")
            assert len(cell) + wide == width, line
    assert body[0].split(" | ")[1] == "    3" and body[1].split(" | ")[1] == "12000"  # numbers right-aligned
    assert body[2].split(" | ")[0].strip() == "NULL"
    with pytest.raises(ValueError, match="unknown output format"):
        render(_sample_table(), "xml")
