"""Views besides encounter, no JVM: the setting, the lookup seam, each view's table, the batch's steps, the split."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from streaming import config as conf
from streaming.cli.settings import load_config, settings_parent
from streaming.fhir.parse import FileSplitter, Record
from streaming.pipeline.batch import STEPS, batch_steps
from streaming.pipeline.views import PARTITION_EXTENSION, load_views, view_table
from streaming.viewdef.compiler import compile_view
from streaming.views.lookup import find_view

VIEWS = Path(__file__).resolve().parent / "fixtures" / "views"
PATIENT, PATIENT_NAME, CONDITION = (str(VIEWS / f"{n}.json") for n in ("patient", "patient_name", "condition"))


def _config(**flat: Any) -> conf.JobConfig:
    return conf.load(None, {"warehouse": "/tmp/views-warehouse", **flat})


def test_encounter_alone_is_the_default_and_runs_no_other_view() -> None:
    config = _config()
    assert config.views.run == "encounter"
    assert conf.view_entries(config) == ()
    assert load_views(config) == ()
    assert batch_steps(()) is STEPS


def test_the_flag_lists_the_views_and_wins_over_the_file(tmp_path: Path) -> None:
    settings = tmp_path / "s.toml"
    settings.write_text('[views]\nrun = "encounter"\n')
    parser = settings_parent()
    args = parser.parse_args(["--config", str(settings), "--views", f"encounter,{PATIENT},{PATIENT},{CONDITION}"])
    config = load_config(args)
    assert conf.view_entries(config) == (PATIENT, CONDITION)
    assert [v.name for v in load_views(config)] == ["patient", "condition"]


@pytest.mark.parametrize(
    ("flat", "message"),
    [
        ({"views.run": f"{PATIENT}"}, "views.run must include encounter"),
        ({"views.fhir_version": "R3"}, "views.fhir_version must be R4 or R5"),
        ({"views.run": f"encounter,{PATIENT}", "key_scope": "folder"}, "key_scope = id"),
        ({"views.small_tables": "patient,Practitioner"}, r"views.small_tables .* \['Practitioner'\]"),
        ({"views.small_tables": "encounter"}, r"views.small_tables .* \['encounter'\]"),
    ],
)
def test_settings_a_view_cannot_run_with_are_refused(flat: dict[str, str], message: str) -> None:
    with pytest.raises(conf.ConfigError, match=message):
        _config(**flat)


def test_a_shipped_name_is_looked_up_first_then_a_file() -> None:
    definition = json.loads(Path(PATIENT).read_text())
    asked: list[tuple[str, str]] = []

    def shipped(name: str, version: str) -> dict[str, Any] | None:
        asked.append((name, version))
        return definition if name == "patient" else None

    found = find_view("patient", "R4", shipped)
    assert (found.view.name, found.view.resource, found.definition) == ("patient", "Patient", definition)
    assert find_view(PATIENT, "R4", shipped).view.columns == found.view.columns  # a path is never asked for
    assert asked == [("patient", "R4")]
    with pytest.raises(conf.ConfigError, match="'practitioner' is no shipped view and no ViewDefinition file"):
        find_view("practitioner", "R4", shipped)


def test_a_shipped_name_finds_the_shipped_view_and_its_definition() -> None:
    from streaming.viewdef import shipped

    found = find_view("patient", "R4")
    assert (found.view.name, found.view.resource) == ("patient", "Patient")
    assert found.definition == shipped.definition("patient", "R4")
    with pytest.raises(conf.ConfigError, match="'no_such_view' is no shipped view and no ViewDefinition file"):
        find_view("no_such_view", "R4")


def test_a_compiled_shipped_view_keys_by_resource_and_row_index() -> None:
    """Without its definition the job cannot tell it gives one row per resource: the row index joins the key."""
    compiled = compile_view(json.loads(Path(PATIENT).read_text()))
    table = view_table(_config(), find_view("patient", "R4", lambda name, version: compiled))
    assert (table.spec.record_key, table.many) == ("resource_key,row_index", True)


def test_each_view_gets_its_table_key_and_partition() -> None:
    config = _config(**{"views.run": f"encounter,{PATIENT},{PATIENT_NAME},{CONDITION}"})
    tables = {v.name: v for v in load_views(config)}
    got = {
        name: (t.spec.name, t.spec.uri, t.spec.record_key, t.spec.partition, t.step, t.resource)
        for name, t in tables.items()
    }
    assert got == {
        "patient": (
            "bronze_patient",
            config.table_uri("bronze_patient"),
            "resource_key",
            "",
            "view_patient",
            "Patient",
        ),
        "patient_name": (
            "bronze_patient_name",
            config.table_uri("bronze_patient_name"),
            "resource_key,row_index",
            "",
            "view_patient_name",
            "Patient",
        ),
        "condition": (
            "bronze_condition",
            config.table_uri("bronze_condition"),
            "resource_key",
            "clinical_status_partition",
            "view_condition",
            "Condition",
        ),
    }
    # A small table (views.small_tables, by default the patient's) reads its keys, without a metadata table; the
    # others look them up in a record index as bronze_encounter does; a partitioned one moves a row across
    # partitions either way.
    index = ("hoodie.metadata.enable", "hoodie.index.type", "hoodie.simple.index.update.partition.path")
    assert {name: tuple(t.spec.options.get(k) for k in index) for name, t in tables.items()} == {
        "patient": ("false", "SIMPLE", "true"),
        "patient_name": (None, "RECORD_INDEX", None),
        "condition": (None, "RECORD_INDEX", None),
    }
    small = {t.name: t.spec.options for t in load_views(_config(**{
        "views.run": f"encounter,{PATIENT},{CONDITION}", "views.small_tables": "condition"}))}  # fmt: skip
    assert (small["patient"]["hoodie.index.type"], small["condition"]["hoodie.index.type"]) == (
        "RECORD_INDEX",
        "GLOBAL_SIMPLE",
    )
    # Only a view whose newer version may give fewer rows reads its stored rows each batch.
    assert {name: t.rows_vary for name, t in tables.items()} == {
        "patient": False,
        "patient_name": True,
        "condition": False,
    }
    # The same ordering payload, global index and sizing as bronze_encounter.
    payload = "hoodie.datasource.write.payload.class"
    assert tables["patient"].spec.options[payload] == "org.apache.hudi.common.model.DefaultHoodieRecordPayload"


def _write(tmp_path: Path, view: dict[str, Any]) -> str:
    path = tmp_path / f"{view.get('name', 'v')}.json"
    path.write_text(json.dumps(view))
    return str(path)


def _view(name: str = "thing", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "resource": "Patient",
        "select": [{"column": [{"name": "gender", "path": "gender"}]}],
        **extra,
    }


@pytest.mark.parametrize(
    ("view", "message"),
    [
        (_view("Bad-Name"), "the view's name must be lower-case"),
        (_view("encounter"), "the view's name must be lower-case"),
        (_view("encounter_ingest_log"), "is one of the job's own tables"),
        (
            {"name": "x", "resource": "Patient", "select": [{"column": [{"name": "sourcename", "path": "gender"}]}]},
            "column names the job adds itself",
        ),
        (_view(extension=[{"url": PARTITION_EXTENSION, "valueString": "nope"}]), "partition column 'nope'"),
        ({"name": "x", "resource": "Patient", "select": []}, "select must be a non-empty list"),
    ],
)
def test_a_view_the_job_cannot_land_is_refused_at_start(tmp_path: Path, view: dict[str, Any], message: str) -> None:
    config = _config(**{"views.run": f"encounter,{_write(tmp_path, view)}"})
    with pytest.raises(conf.ConfigError, match=message):
        load_views(config)


def test_a_view_with_a_where_reads_its_stored_rows(tmp_path: Path) -> None:
    view = _view(where=[{"path": "gender = 'female'"}])
    (table,) = load_views(_config(**{"views.run": f"encounter,{_write(tmp_path, view)}"}))
    assert (table.many, table.rows_vary, table.keys) == (False, True, ("resource_key",))


def test_two_views_of_one_name_are_refused(tmp_path: Path) -> None:
    one = tmp_path / "a"
    one.mkdir()
    config = _config(**{"views.run": f"encounter,{_write(tmp_path, _view())},{_write(one, _view())}"})
    with pytest.raises(conf.ConfigError, match="two views are named 'thing'"):
        load_views(config)


@pytest.mark.parametrize("construct", ["forEach", "forEachOrNull"])
def test_a_view_that_can_give_several_rows_keys_by_row_index_too(tmp_path: Path, construct: str) -> None:
    view = {
        "name": "names",
        "resource": "Patient",
        "select": [{construct: "name", "column": [{"name": "f", "path": "family"}]}],
    }
    config = _config(**{"views.run": f"encounter,{_write(tmp_path, view)}"})
    (table,) = load_views(config)
    assert (table.many, table.keys) == (True, ("resource_key", "row_index"))


def test_the_views_steps_come_between_the_quarantine_and_bronze() -> None:
    config = _config(**{"views.run": f"encounter,{PATIENT},{CONDITION}"})
    names = [s.name for s in batch_steps(load_views(config))]
    assert names == [
        "intent",
        "read",
        "quarantine",
        "view_patient",
        "view_condition",
        "bronze",
        "ledger",
        "ingest_log",
        "upkeep",
    ]


def _split(types: frozenset[str] | None, value: dict[str, Any]) -> list[Record]:
    limits = conf.FhirConfig()
    splitter = FileSplitter(limits) if types is None else FileSplitter(limits, types)
    return list(splitter.split(io.BytesIO(json.dumps(value, indent=1).encode())))  # a document: `entry N`


_BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "timestamp": "2024-05-01T00:00:00Z",
    "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "id": "p1"}},
        {
            "fullUrl": "urn:uuid:e",
            "resource": {"resourceType": "Encounter", "id": "e1", "subject": {"reference": "urn:uuid:p"}},
        },
        {"request": {"method": "DELETE", "url": "Patient/p2"}},
        {"request": {"method": "DELETE", "url": "Patient?identifier=x"}},
        {"resource": {"resourceType": "Procedure", "id": "x1"}},
    ],
}


def _brief(records: list[Record]) -> list[tuple[str, str, str | None, str | None, str | None]]:
    return [(r.kind, r.position, r.resource_type, r.resource_id, r.reason) for r in records]


def test_the_split_keeps_the_running_views_types_and_skips_the_rest() -> None:
    assert _brief(_split(frozenset({"Encounter", "Patient"}), _BUNDLE)) == [
        ("resource", "entry 0", "Patient", "p1", None),
        ("resource", "entry 1", "Encounter", "e1", None),
        ("delete", "entry 2", "Patient", "p2", None),
        ("quarantine", "entry 3", None, None, "bad_bundle_entry"),
        ("skipped", "entry 4", "Procedure", None, None),
    ]


def test_the_encounter_only_split_is_unchanged() -> None:
    assert _brief(_split(None, _BUNDLE)) == [
        ("skipped", "entry 0", "Patient", None, None),
        ("resource", "entry 1", "Encounter", "e1", None),
        ("skipped", "entry 2", "Patient", None, None),
        ("skipped", "entry 3", "Patient", None, None),
        ("skipped", "entry 4", "Procedure", None, None),
    ]
    patient = _split(frozenset({"Encounter", "Patient"}), _BUNDLE)[0]
    assert (patient.ref_map, patient.bundle_timestamp) == ({}, "2024-05-01T00:00:00Z")
    encounter = _split(None, _BUNDLE)[1]
    assert encounter.ref_map == {"urn:uuid:p": "Patient/p1"}


def test_a_shipped_module_plugs_in_by_its_shipped_view_and_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seam as streaming/viewdef/shipped.py fills it: shipped_view -> CompiledView, UnknownView, definition()."""
    import sys
    import types

    from streaming.viewdef.errors import ViewError

    class UnknownView(ViewError):
        pass

    definitions = {"patient_name": json.loads(Path(PATIENT_NAME).read_text())}

    def definition(name: str, fhir_version: str = "R4") -> dict[str, Any]:
        if name not in definitions:
            raise UnknownView(name)
        return definitions[name]

    module = types.ModuleType("streaming.viewdef.shipped")
    module.UnknownView = UnknownView  # type: ignore[attr-defined]
    module.definition = definition  # type: ignore[attr-defined]
    module.shipped_view = lambda name, version="R4": compile_view(definition(name, version), fhir_version=version)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "streaming.viewdef.shipped", module)
    config = _config(**{"views.run": f"encounter,patient_name,{CONDITION}"})
    tables = {t.name: (t.resource, t.many, t.rows_vary, t.spec.record_key) for t in load_views(config)}
    assert tables == {
        "patient_name": ("Patient", True, True, "resource_key,row_index"),  # read from the shipped definition
        "condition": ("Condition", False, False, "resource_key"),
    }
    with pytest.raises(conf.ConfigError, match="'practitioner' is no shipped view"):
        find_view("practitioner", "R4")
