"""Views besides encounter through the real job (Spark + Hudi): each in its own table, exactly once, by name.

Expected rows are computed from the input files in plain Python; the tables are read back with `query` (hudi-rs and
DuckDB), which is also how an analyst reaches them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import job_config

from benchmarks.shared_data import BULK
from streaming.ops.query import query
from streaming.pipeline import job

pytestmark = pytest.mark.spark

VIEWS = Path(__file__).resolve().parent / "fixtures" / "views"
RUN = ",".join(["encounter", *(str(VIEWS / f"{n}.json") for n in ("patient", "patient_name", "condition"))])
VIEW_TABLES = ("bronze_patient", "bronze_patient_name", "bronze_condition")


def _lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(position, resource) of an NDJSON file, positions as the job names them (`line N`)."""
    text = path.read_text(encoding="utf-8").splitlines()
    return [(f"line {n}", json.loads(line)) for n, line in enumerate(text, 1) if line.strip()]


def _ref(reference: dict[str, Any] | None, kind: str) -> str | None:
    target = (reference or {}).get("reference", "")
    prefix = f"{kind}/"
    return target[len(prefix) :] if target.startswith(prefix) else None


def expected_patients(path: Path) -> dict[tuple[Any, ...], dict[str, Any]]:
    uri = f"file:{path.resolve()}"
    rows = {}
    for position, p in _lines(path):
        names = p.get("name") or []
        rows[(p["id"],)] = {
            "id": p["id"],
            "gender": p.get("gender"),
            "birth_date": p.get("birthDate"),
            "family": names[0].get("family") if names else None,
            "sourcename": uri,
            "source_position": position,
            "is_deleted": False,
        }
    return rows


def expected_patient_names(path: Path) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows = {}
    for _, p in _lines(path):
        for index, name in enumerate(p.get("name") or []):
            rows[(p["id"], index)] = {
                "patient_id": p["id"],
                "name_use": name.get("use"),
                "family": name.get("family"),
                "given": " ".join(name.get("given") or []),
                "is_deleted": False,
            }
    return rows


def expected_conditions(path: Path) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows = {}
    for _, c in _lines(path):
        status = ((c.get("clinicalStatus") or {}).get("coding") or [{}])[0].get("code")
        rows[(c["id"],)] = {
            "id": c["id"],
            "patient_id": _ref(c.get("subject"), "Patient"),
            "encounter_id": _ref(c.get("encounter"), "Encounter"),
            "code": ((c.get("code") or {}).get("coding") or [{}])[0].get("code"),
            "clinical_status": status,
            "onset": c.get("onsetDateTime"),
            "clinical_status_partition": status,
            "is_deleted": False,
        }
    return rows


def actual(config: Any, table: str, keys: tuple[str, ...], columns: list[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """A table's rows by key, read with `query`; a key twice fails."""
    rows = query(config, f"SELECT {', '.join([*keys, *columns])} FROM {table}").to_pylist()
    by_key = {tuple(r[k] for k in keys): {c: r[c] for c in columns} for r in rows}
    assert len(by_key) == len(rows), f"{table}: {len(rows) - len(by_key)} keys twice"
    return by_key


def _timelines(config: Any) -> dict[str, list[str]]:
    out = {}
    for name in ("bronze_encounter", "bronze_encounter_ingest_log", *VIEW_TABLES):
        folder = Path(config.table_uri(name)) / ".hoodie"
        out[name] = sorted(p.name for p in folder.iterdir() if p.is_file())
    return out


def test_views_over_a_bulk_export_land_once_each_in_its_table(spark: Any, tmp_path: Path) -> None:
    config = job_config(tmp_path, BULK, **{"views.run": RUN})
    first = job.run(config, once=True, spark=spark)
    assert [b.views["patient"].versions for b in first.batches] == [13]

    patients = expected_patients(BULK / "Patient.000.ndjson")
    assert actual(config, "bronze_patient", ("resource_key",), list(next(iter(patients.values())))) == patients
    names = expected_patient_names(BULK / "Patient.000.ndjson")
    got_names = actual(config, "bronze_patient_name", ("resource_key", "row_index"), list(next(iter(names.values()))))
    assert got_names == names
    conditions = expected_conditions(BULK / "Condition.000.ndjson")
    columns = list(next(iter(conditions.values())))
    assert actual(config, "bronze_condition", ("resource_key",), columns) == conditions
    # The Encounter table is as the Encounter-only job writes it: one row per Encounter, nothing of other types.
    encounter_ids = {r["id"] for _, r in _lines(BULK / "Encounter.000.ndjson")}
    encounters = query(config, "SELECT encounter_id FROM bronze_encounter").to_pylist()
    assert sorted(r["encounter_id"] for r in encounters) == sorted(encounter_ids)
    # Every view table is registered by name, with the columns it holds.
    for table in VIEW_TABLES:
        registered = json.loads((tmp_path / "warehouse" / "_catalog" / "bronze" / f"{table}.json").read_text())
        definition = registered["TableInput"]
        names_in_catalog = [c["Name"] for c in definition["StorageDescriptor"]["Columns"]]
        held = [f.name for f in spark.read.format("hudi").load(config.table_uri(table)).schema.fields]
        partitions = [k["Name"] for k in definition["PartitionKeys"]]
        assert names_in_catalog + partitions == held, table
    registered = json.loads((tmp_path / "warehouse" / "_catalog" / "bronze" / "bronze_condition.json").read_text())
    assert sorted(p["Values"] for p in registered["Partitions"]) == [["active"], ["resolved"]]

    # The same files again: the ledger keeps them out, no table changes.
    before = _timelines(config)
    second = job.run(config, once=True, spark=spark)
    assert sum(len(b.files) for b in second.batches) == 0
    assert _timelines(config) == before
    assert actual(config, "bronze_patient", ("resource_key",), list(next(iter(patients.values())))) == patients


def _ndjson(path: Path, resources: list[dict[str, Any]], mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))
    os.utime(path, (mtime, mtime))


def _patient(pid: str, updated: str, *families: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"lastUpdated": updated},
        "gender": "female",
        "name": [{"family": f, "given": [f"G{i}"]} for i, f in enumerate(families)],
    }


def test_newer_versions_deletes_and_bad_records_in_a_view_table(spark: Any, tmp_path: Path) -> None:
    """Ordering by event time, tombstones for deletes and for the rows a newer version no longer gives,
    quarantine rows naming the views; a late older version changes nothing."""
    landing = tmp_path / "landing"
    run = ",".join(["encounter", str(VIEWS / "patient.json"), str(VIEWS / "patient_name.json")])
    config = job_config(tmp_path, landing, **{"views.run": run})
    _ndjson(
        landing / "a.ndjson",
        [
            _patient("p1", "2024-05-01T00:00:00Z", "One", "Uno"),
            _patient("p2", "2024-05-01T00:00:00Z", "Two"),
            _patient("p3", "2024-05-01T00:00:00Z", "Three"),
        ],
        1_700_000_000,
    )
    job.run(config, once=True, spark=spark)

    _ndjson(
        landing / "b.ndjson",
        [
            _patient("p1", "2024-05-02T00:00:00Z", "Eins"),  # newer, one name fewer
            _patient("p3", "2024-04-01T00:00:00Z", "Drei", "Tres"),  # older, arriving late: loses
            {"resourceType": "Patient", "gender": "male"},  # no id
            {**_patient("p4", "not a time", "Vier")},
        ],
        1_700_000_100,
    )
    delete = {
        "resourceType": "Bundle",
        "type": "transaction",
        "timestamp": "2024-05-03T00:00:00Z",
        "entry": [{"request": {"method": "DELETE", "url": "Patient/p2"}}],
    }
    (landing / "c.json").write_text(json.dumps(delete, indent=1))
    job.run(config, once=True, spark=spark)

    patients = actual(config, "bronze_patient", ("resource_key",), ["family", "is_deleted"])
    assert patients == {
        ("p1",): {"family": "Eins", "is_deleted": False},
        ("p2",): {"family": None, "is_deleted": True},
        ("p3",): {"family": "Three", "is_deleted": False},
    }
    names = actual(config, "bronze_patient_name", ("resource_key", "row_index"), ["family", "is_deleted"])
    assert names == {
        ("p1", 0): {"family": "Eins", "is_deleted": False},
        ("p1", 1): {"family": None, "is_deleted": True},  # the newer p1 has one name
        ("p2", 0): {"family": None, "is_deleted": True},
        ("p3", 0): {"family": "Three", "is_deleted": False},
    }
    b = f"file:{(landing / 'b.ndjson').resolve()}"
    quarantined = query(config, "SELECT sourcename, source_position, reason, message FROM bronze_encounter_quarantine")
    assert sorted(
        (r["sourcename"], r["source_position"], r["reason"], r["message"]) for r in quarantined.to_pylist()
    ) == [
        (b, "line 3", "missing_id", "Patient.id is missing (not landed in bronze_patient, bronze_patient_name)"),
        (
            b,
            "line 4",
            "bad_datetime",
            "not a FHIR dateTime: Patient.meta.lastUpdated (not landed in bronze_patient, bronze_patient_name)",
        ),
    ]


def test_a_views_table_is_clustered_and_cleaned_like_bronze(spark: Any, tmp_path: Path) -> None:
    """Upkeep serves every view's table too, one service a batch: each table's small files are merged."""
    landing = tmp_path / "landing"
    landing.mkdir()
    lines = (BULK / "Patient.000.ndjson").read_text(encoding="utf-8").splitlines()
    for n in range(3):  # three batches of patients: three small files to cluster
        (landing / f"patients-{n}.ndjson").write_text("\n".join(lines[n::3]) + "\n", encoding="utf-8")
    every = {"layout.cluster_every_seconds": 1, "layout.clean_every_seconds": 1, "layout.small_file_mb": 0}
    config = job_config(tmp_path, landing, max_files_per_trigger=1, **{"views.run": "encounter,patient", **every})

    ran = job.run(config, once=True, spark=spark)

    services = [b.services for b in ran.batches if b.files]
    assert all(len(s) <= 1 for s in services), services
    # Bronze holds no row (no Encounter came), so it has nothing to serve; the patient table has, in turns.
    assert {s for (s,) in filter(None, services)} == {"clustering:bronze_patient", "clean:bronze_patient"}, services
    timeline = sorted(p.name for p in (Path(config.table_uri("bronze_patient")) / ".hoodie").iterdir())
    assert [n for n in timeline if n.endswith(".replacecommit")]  # (a clean of 3 commits has nothing to delete)
    # Every patient once, as the view gives it (from the split files, so not their positions in the export's file).
    columns = ["id", "gender", "birth_date", "family", "is_deleted"]
    patients = {k: {c: row[c] for c in columns} for k, row in expected_patients(BULK / "Patient.000.ndjson").items()}
    assert actual(config, "bronze_patient", ("resource_key",), columns) == patients


def _condition(cid: str, updated: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "meta": {"lastUpdated": updated},
        "clinicalStatus": {"coding": [{"code": status}]},
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"code": "44054006"}]},
    }


def test_a_view_table_moves_between_its_indexes_keeping_one_row_per_key(spark: Any, tmp_path: Path) -> None:
    """`views.small_tables` may change under a table with data: record index -> small (its metadata table goes) ->
    record again (rebuilt from the files). Each batch still finds every stored row: a newer version replaces it,
    a partitioned table's row moves partition, no key is ever held twice."""
    landing = tmp_path / "landing"
    run = ",".join(["encounter", str(VIEWS / "patient.json"), str(VIEWS / "condition.json")])

    def ingest(small: str, n: int, resources: list[dict[str, Any]]) -> Any:
        _ndjson(landing / f"{n}.ndjson", resources, 1_700_000_000 + 100 * n)
        config = job_config(tmp_path, landing, **{"views.run": run, "views.small_tables": small})
        job.run(config, once=True, spark=spark)
        return config

    def state(config: Any) -> tuple[Any, ...]:
        patients = actual(config, "bronze_patient", ("resource_key",), ["family"])
        conditions = actual(config, "bronze_condition", ("resource_key",), ["clinical_status_partition"])
        metadata = tuple((Path(config.table_uri(t)) / ".hoodie" / "metadata").exists() for t in VIEW_TABLES[::2])
        return (
            {k: r["family"] for (k,), r in patients.items()},
            {k: r["clinical_status_partition"] for (k,), r in conditions.items()},
            metadata,
        )

    first = [_patient(p, "2024-05-01T00:00:00Z", p.upper()) for p in ("p1", "p2", "p3")]
    config = ingest("", 1, [*first, _condition("c1", "2024-05-01T00:00:00Z", "active")])
    assert state(config) == ({"p1": "P1", "p2": "P2", "p3": "P3"}, {"c1": "active"}, (True, True))

    second = [_patient("p1", "2024-05-02T00:00:00Z", "One"), _patient("p4", "2024-05-02T00:00:00Z", "Four")]
    config = ingest("patient,condition", 2, [*second, _condition("c1", "2024-05-02T00:00:00Z", "resolved")])
    assert state(config) == (
        {"p1": "One", "p2": "P2", "p3": "P3", "p4": "Four"},
        {"c1": "resolved"},
        (False, False),
    )

    third = [_patient("p2", "2024-05-03T00:00:00Z", "Two"), _patient("p4", "2024-05-03T00:00:00Z", "Vier")]
    config = ingest("", 3, [*third, _condition("c1", "2024-05-03T00:00:00Z", "active")])
    assert state(config) == (
        {"p1": "One", "p2": "Two", "p3": "P3", "p4": "Vier"},
        {"c1": "active"},
        (True, True),
    )
