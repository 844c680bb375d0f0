"""Exactly once across the views' tables: the real job killed between two tables' commits, then restarted.

The views' steps (`view_<name>`) run after the quarantine and before bronze, so a kill between two of them leaves one
view's table with the batch and bronze without it: recovery abandons the intent and the replayed batch writes
every table again (upserts of the same versions). The tables must then hold what the files say, each file committed
once in the ledger.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from harness import KILLED, Job, SqliteLedgerView, file_uri

from streaming import config as conf
from streaming.ops.query import query

pytestmark = pytest.mark.job  # the fault harness runs and kills the job in other processes

VIEWS = Path(__file__).resolve().parent / "fixtures" / "views"
RUN = ",".join(["encounter", str(VIEWS / "patient.json"), str(VIEWS / "patient_name.json")])
WAIT = 600


def _patient(pid: str, day: int, *families: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"lastUpdated": f"2024-05-{day:02d}T00:00:00Z"},
        "name": [{"family": f} for f in families],
    }


def _encounter(eid: str, day: int, status: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "meta": {"lastUpdated": f"2024-05-{day:02d}T00:00:00Z"},
        "status": status,
        "subject": {"reference": f"Patient/{eid}"},
        "serviceProvider": {"display": "Alpha"},
    }


def _land(landing: Path, name: str, resources: list[dict[str, Any]], bundle: bool = False) -> Path:
    """NDJSON mixing types, or a Bundle of them (an indented document)."""
    path = landing / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if bundle:
        entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources]
        path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}, indent=1))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in resources))
    return path


def _newest(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for r in resources:
        if r["resourceType"] == kind and (
            r["id"] not in best or r["meta"]["lastUpdated"] > best[r["id"]]["meta"]["lastUpdated"]
        ):
            best[r["id"]] = r
    return best


def _commits(warehouse: Path, table: str) -> int:
    folder = warehouse / table / ".hoodie"
    return len(list(folder.glob("*.commit"))) if folder.exists() else 0


def test_a_kill_between_two_view_tables_commits_leaves_each_table_exactly_once(tmp_path: Path) -> None:
    landing, warehouse = tmp_path / "landing", tmp_path / "warehouse"
    ledger = SqliteLedgerView(warehouse / "_ledger" / "ledger.sqlite3")
    w1 = [
        _patient("p1", 1, "One", "Uno"),
        _encounter("e1", 1, "finished"),
        _patient("p2", 1, "Two"),
        _encounter("e2", 1, "in-progress"),
    ]
    w1_bundle = [_patient("p3", 1, "Three", "Drei"), _encounter("e3", 1, "planned")]
    files = [_land(landing, "w1/a.ndjson", w1), _land(landing, "w1/b.json", w1_bundle, bundle=True)]
    w2 = [_patient("p1", 2, "Eins"), _encounter("e2", 2, "finished"), _patient("p4", 2, "Four")]
    with Job(tmp_path, landing, warehouse, args=["--views", RUN]) as job:
        killed = job.run("kill-after-view-patient", kill_at="after_view_patient", timeout=WAIT)
        assert killed.returncode == KILLED, killed.tail()
        # Killed between the two views' commits: bronze_patient has the batch, the others do not.
        assert ledger.open_intents(), killed.tail()
        written = {t: _commits(warehouse, t) for t in ("bronze_patient", "bronze_patient_name", "bronze_encounter")}
        assert written == {"bronze_patient": 1, "bronze_patient_name": 0, "bronze_encounter": 0}

        files.append(_land(landing, "w2/c.ndjson", w2))
        os.utime(files[-1], (files[0].stat().st_mtime + 60,) * 2)
        again = job.run("kill-after-view-patient-name", kill_at="after_view_patient_name", timeout=WAIT)
        assert again.returncode == KILLED, again.tail()
        final = job.run("final", timeout=WAIT)
        assert final.returncode == 0, final.tail()

    uris = {file_uri(p) for p in files}
    committed = ledger.all_committed()
    assert (set(committed), set(committed.values()), ledger.open_intents()) == (uris, {1}, set())
    resources = w1 + w1_bundle + w2
    config = conf.load(None, {"warehouse": str(warehouse)})
    patients = {r["resource_key"]: r["family"] for r in query(config, "SELECT * FROM bronze_patient").to_pylist()}
    assert patients == {pid: p["name"][0]["family"] for pid, p in _newest(resources, "Patient").items()}
    names = query(config, "SELECT resource_key, row_index, family, is_deleted FROM bronze_patient_name").to_pylist()
    expected_names = {
        (pid, i): (n["family"], False)
        for pid, p in _newest(resources, "Patient").items()
        for i, n in enumerate(p["name"])
    }
    expected_names[("p1", 1)] = (None, True)  # the newer p1 has one name: its second row is a tombstone
    assert {(r["resource_key"], r["row_index"]): (r["family"], r["is_deleted"]) for r in names} == expected_names
    encounters = query(config, "SELECT encounter_id, status FROM bronze_encounter").to_pylist()
    assert {r["encounter_id"]: r["status"] for r in encounters} == {
        eid: e["status"] for eid, e in _newest(resources, "Encounter").items()
    }
    # Each file in exactly one ingest-log row: the killed batches have none.
    logged = query(config, "SELECT files FROM bronze_encounter_ingest_log").to_pylist()
    assert sorted(f for r in logged for f in r["files"]) == sorted(uris)
