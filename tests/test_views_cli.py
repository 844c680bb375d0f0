"""`bronze-encounter views run` and `views test` as a user calls them: help, rows, report files, exit codes."""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks.shared_data import BULK, SOF_SUITE
from streaming.cli import main, parser


def _views_commands() -> dict[str, argparse.ArgumentParser]:
    top = parser()
    group = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices["views"]
    return dict(next(a for a in group._actions if isinstance(a, argparse._SubParsersAction)).choices)


@pytest.mark.parametrize("name", ["run", "test"])
def test_every_option_is_explained_in_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    command = _views_commands()[name]
    with pytest.raises(SystemExit) as done:
        main(["views", name, "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for action in command._actions:
        explained = " ".join(command._get_formatter()._expand_help(action).split())
        assert len(explained.split()) >= 3 and explained in text, f"views {name} {action.dest}"
        if action.nargs != 0 and action.option_strings and action.choices is None and action.dest != "help":
            assert "e.g." in explained, f"views {name} {action.dest}: no example"
        if action.default not in (None, False, argparse.SUPPRESS):
            assert f"default: {action.default}" in explained, f"views {name} {action.dest}: default not stated"


def _patient_view(tmp_path: Path, view: dict[str, Any] | None = None) -> Path:
    path = tmp_path / "patient.json"
    path.write_text(
        json.dumps(
            view
            or {
                "resourceType": "ViewDefinition",
                "name": "patient",
                "resource": "Patient",
                "select": [
                    {
                        "column": [
                            {"name": "id", "path": "getResourceKey()"},
                            {"name": "org", "path": "managingOrganization.getReferenceKey(Organization)"},
                        ]
                    },
                    {"forEachOrNull": "name", "column": [{"name": "family", "path": "family"}]},
                ],
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "--view", "{tmp}/missing.json", "--source", "{tmp}"], "cannot read it (FileNotFoundError)"),
        (["run", "--view", "{tmp}/not.json", "--source", "{tmp}"], "not JSON"),
        (["run", "--view", "{tmp}/bad.json", "--source", "{tmp}"], "HumanName has no element 'famly'"),
        (["run", "--view", "{tmp}/patient.json", "--source", "{tmp}/nowhere"], "no such file or folder"),
        (["run", "--view", "{tmp}/patient.json", "--source", "{tmp}/empty"], "the folder holds no files"),
        (["test", "--suite", "{tmp}/empty"], "not a SQL on FHIR test suite"),
        (["run", "--view", "patients", "--source", "{tmp}"], "no shipped view 'patients' (shipped: encounter,"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    _patient_view(tmp_path)
    (tmp_path / "not.json").write_text("{")
    bad = {"resource": "Patient", "select": [{"column": [{"name": "f", "path": "name.famly"}]}]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    (tmp_path / "empty").mkdir()
    assert main(["views", *(a.format(tmp=tmp_path) for a in args)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("bronze-encounter: ") and says in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


@pytest.mark.spark
def test_views_run_reads_every_file_shape_and_prints_the_rows(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landing = tmp_path / "landing"
    (landing / "nested").mkdir(parents=True)
    patients = [
        {"resourceType": "Patient", "id": "a", "name": [{"family": "Ames"}, {"family": "Arden"}]},
        {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"}},
        {"resourceType": "Patient", "id": "b", "managingOrganization": {"reference": "Organization/org-1"}},
    ]
    (landing / "patients.ndjson").write_text("\n".join(json.dumps(p) for p in patients) + "\n")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:o-9", "resource": {"resourceType": "Organization", "id": "org-9", "name": "H"}},
            {
                "fullUrl": "urn:uuid:p-c",
                "resource": {
                    "resourceType": "Patient",
                    "id": "c",
                    "managingOrganization": {"reference": "urn:uuid:o-9"},
                    "name": [{"family": "Cole"}],
                },
            },
            {"request": {"method": "DELETE", "url": "Patient/z"}},
        ],
    }
    with gzip.open(landing / "nested" / "bundle.json.gz", "wt") as out:
        json.dump(bundle, out)
    (landing / "single.json").write_text(json.dumps({"resourceType": "Patient", "id": "d"}, indent=2))
    (landing / "notes.txt").write_text("not FHIR")
    view = _patient_view(tmp_path)

    assert main(["views", "run", "--view", str(view), "--source", str(landing), "--format", "json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert sorted(rows, key=lambda r: (r["id"], r["family"] or "")) == [
        {"id": "a", "org": None, "family": "Ames"},
        {"id": "a", "org": None, "family": "Arden"},
        {"id": "b", "org": "org-1", "family": None},
        {"id": "c", "org": "org-9", "family": "Cole"},  # the Bundle's urn:uuid resolved through its fullUrl
        {"id": "d", "org": None, "family": None},
    ]
    assert "skipped 1 inputs that are no FHIR resource (malformed_json 1)" in captured.err

    assert main(["views", "run", "--view", str(view), "--source", str(landing / "single.json"), "--format", "csv"]) == 0
    assert capsys.readouterr().out == "id,org,family\nd,,\n"

    many = {"resource": "Patient", "select": [{"column": [{"name": "family", "path": "name.family"}]}]}
    assert main(["views", "run", "--view", str(_patient_view(tmp_path, many)), "--source", str(landing)]) == 2
    captured = capsys.readouterr()
    assert captured.err == "bronze-encounter: view 'Patient': column 'family' has more than one value\n"
    assert "Ames" not in captured.err


@pytest.mark.spark
def test_views_test_writes_the_report_and_each_cases_rows(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "suite" / "tests"  # three of the suite's files, one of them with a wrong expectation
    suite.mkdir(parents=True)
    for name in ("basic.json", "validate.json"):
        shutil.copy(SOF_SUITE / "tests" / name, suite / name)
    broken = json.loads((SOF_SUITE / "tests" / "fn_first.json").read_text())
    broken["tests"][0]["expect"] = [{"use": "usual"}]
    (suite / "fn_first.json").write_text(json.dumps(broken))
    report, actual = tmp_path / "out" / "report.json", tmp_path / "out" / "actual"

    code = main(["views", "test", "--suite", str(suite.parent), "--report", str(report), "--actual", str(actual)])
    assert code == 1  # a shareable case failed
    out = capsys.readouterr().out
    assert "failed: fn_first.json #0 'table level first()' (shareable): 1 of 1 expected rows not found" in out
    assert re.search(r"^total +17/18 +-$", out, re.MULTILINE)

    written = json.loads(report.read_text())
    assert sorted(written) == ["basic.json", "fn_first.json", "validate.json"]
    for file, part in written.items():  # the suite's test-report.schema.json, by hand
        assert set(part) == {"tests"}
        cases = json.loads((suite / file).read_text())["tests"]
        assert [t["name"] for t in part["tests"]] == [c["title"] for c in cases]
        for test in part["tests"]:
            assert set(test) == {"name", "result"} and isinstance(test["result"]["passed"], bool)
            assert set(test["result"]) <= {"passed", "error", "details"}
    passed = {(f, t["name"]): t["result"]["passed"] for f, p in written.items() for t in p["tests"]}
    assert sum(passed.values()) == 17 and not passed["fn_first.json", "table level first()"]
    assert written["validate.json"]["tests"][4]["result"]["details"]["raised"].startswith("NotBoolean: ")

    basic = json.loads((suite / "basic.json").read_text())["tests"]
    assert json.loads((actual / "basic" / "1.json").read_text()) == basic[1]["expect"]
    assert json.loads((actual / "fn_first" / "0.json").read_text()) == [{"use": "official"}]
    assert not (actual / "validate").exists()  # no rows for views that fail, as those cases expect


@pytest.mark.spark
def test_views_run_takes_a_shipped_view_by_name(spark: Any, capsys: pytest.CaptureFixture[str]) -> None:
    practitioners = BULK / "Practitioner.000.ndjson"
    assert main(["views", "run", "--view", "practitioner", "--source", str(practitioners), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    expected = [json.loads(line) for line in practitioners.read_text().splitlines() if line.strip()]
    assert sorted((r["id"], r["npi"]) for r in rows) == sorted((p["id"], p["identifier"][0]["value"]) for p in expected)
