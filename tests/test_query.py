"""`query` (hudi-rs + DuckDB, no JVM) and the ready queries (docs/reference.md), checked against plain Python."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
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
LABELS = {"AMB": "Outpatient-Ambulatory", "IMP": "Inpatient", "EMER": "Emergency"}


# -- plain-Python answers from encounters.ndjson ------------------------------------------------------------------


@pytest.fixture(scope="module")
def encounters(samples: Path) -> list[dict[str, Any]]:
    lines = (samples / "encounters.ndjson").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text).astimezone(UTC) if text else None


def _period(e: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    period = e.get("period") or {}
    return _time(period.get("start")), _time(period.get("end"))


def _label(e: dict[str, Any]) -> str:
    return LABELS[e["class"]["code"]]  # KeyError: the samples hold a class this test does not know


def _happened(e: dict[str, Any]) -> bool:
    return e.get("status") not in ("cancelled", "entered-in-error")


def expected_durations(encounters: list[dict[str, Any]]) -> dict[str, tuple[int, float, float]]:
    minutes: dict[str, list[float]] = defaultdict(list)
    for e in encounters:
        start, end = _period(e)
        if e["status"] in ("finished", "completed") and start and end and end >= start:
            minutes[_label(e)].append((end - start).total_seconds() / 60)
    return {label: (len(m), sum(m) / len(m), max(m)) for label, m in minutes.items()}


def expected_readmissions(encounters: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    stays = [e for e in encounters if _label(e) == "Inpatient" and _happened(e) and _period(e)[0]]
    by_patient: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in stays:
        by_patient[e["subject"]["reference"]].append(e)
    result: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in stays:
        discharge = _period(e)[1]
        if discharge is None:
            continue
        again = any(
            discharge < _period(other)[0] <= discharge + timedelta(days=30)
            for other in by_patient[e["subject"]["reference"]]
            if other["id"] != e["id"]
        )
        counts = result[e["serviceProvider"]["display"]]
        counts[0] += 1
        counts[1] += int(again)
    return {hospital: (n, r) for hospital, (n, r) in result.items()}


def expected_utilisation(encounters: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, int, float]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in encounters:
        if _happened(e):
            groups[(e["serviceProvider"]["display"], e["location"][0]["location"]["display"])].append(e)
    out = {}
    for key, group in groups.items():
        hours = 0.0
        for e in group:
            start, end = _period(e)
            if start and end and end >= start:
                hours += (end - start).total_seconds() / 3600
        out[key] = (len(group), len({e["subject"]["reference"] for e in group}), hours)
    return out


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


@pytest.mark.slow
def test_counts_per_hospital_equal_the_ndjson(synthea: Any, encounters: list[dict[str, Any]]) -> None:
    expected = Counter(e["serviceProvider"]["display"] for e in encounters)
    assert len(expected) == 118
    for table in ("bronze_encounter", "bronze.bronze_encounter", '"bronze"."bronze_encounter"'):
        result = query(synthea, f"SELECT hospital_name, count(*) AS n FROM {table} GROUP BY hospital_name")
        assert result.column_names == ["hospital_name", "n"]
        assert dict(zip(*result.to_pydict().values(), strict=True)) == expected


@pytest.mark.slow
def test_star_and_whole_rows_read_every_column(synthea: Any, encounters: list[dict[str, Any]]) -> None:
    everything = query(synthea, "SELECT * FROM bronze_encounter")
    assert everything.column_names == table_schemas(synthea)["bronze_encounter"].names
    assert sorted(everything.column("encounter_id").to_pylist()) == sorted(e["id"] for e in encounters)
    whole = query(synthea, "SELECT e FROM bronze_encounter AS e LIMIT 1")
    assert set(whole.column("e")[0].as_py()) == set(everything.column_names)


@pytest.mark.slow
def test_durations_by_type(synthea: Any, encounters: list[dict[str, Any]]) -> None:
    result = query(synthea, queries.DURATIONS_BY_TYPE.sql).to_pylist()
    expected = expected_durations(encounters)
    assert {r["encounter_type"] for r in result} == set(expected) == set(LABELS.values())
    for r in result:
        n, avg, longest = expected[r["encounter_type"]]
        assert r["encounters"] == n
        assert r["avg_minutes"] == pytest.approx(avg, abs=0.05 + 1e-9)  # rounded to one decimal in SQL
        assert r["max_minutes"] == pytest.approx(longest)


@pytest.mark.slow
def test_readmissions_30d(synthea: Any, encounters: list[dict[str, Any]]) -> None:
    result = query(synthea, queries.READMISSIONS_30D.sql).to_pylist()
    expected = expected_readmissions(encounters)
    assert sum(n for n, _ in expected.values()) == 451  # the Synthea inpatient stays
    assert sum(r for _, r in expected.values()) > 0
    assert {r["hospital_name"]: (r["admissions"], r["readmissions_30d"]) for r in result} == expected
    for r in result:
        assert r["readmission_rate"] == pytest.approx(r["readmissions_30d"] / r["admissions"], abs=0.0005 + 1e-9)


@pytest.mark.slow
def test_utilisation(synthea: Any, encounters: list[dict[str, Any]]) -> None:
    result = query(synthea, queries.UTILISATION.sql).to_pylist()
    expected = expected_utilisation(encounters)
    assert {(r["hospital_name"], r["department"]): (r["encounters"], r["patients"]) for r in result} == {
        key: (n, patients) for key, (n, patients, _) in expected.items()
    }
    for r in result:
        hours = expected[(r["hospital_name"], r["department"])][2]
        assert r["total_hours"] == pytest.approx(hours, abs=0.05 + 1e-9)


@pytest.mark.slow
def test_empty_schemas_match_the_written_tables(synthea: Any) -> None:
    """A table not written yet reads with the columns the job would write (drift here means update table_schemas)."""
    from hudi import HudiTableBuilder

    for name, schema in table_schemas(synthea).items():
        written = HudiTableBuilder.from_base_uri(synthea.table_uri(name)).build().get_schema_with_meta_fields()
        assert [(f.name, str(f.type)) for f in written] == [(f.name, str(f.type)) for f in schema], name


@pytest.mark.slow
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
