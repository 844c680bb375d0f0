"""The SQL on FHIR v2 conformance suite, one test per case, run on local Spark; and what the suite does not cover:
Bundle references, R5 resources, the run-time checks, the columns a caller keeps."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.shared_data import SOF_SUITE
from streaming.viewdef import compile_view
from streaming.views import runner

FILES = {f.name: f for f in runner.load_suite(SOF_SUITE)}
# The cases' report in the suite's schema, for CI to keep (work/ is not committed).
REPORT = Path(
    os.environ.get(
        "BRONZE_VIEWS_REPORT", Path(__file__).resolve().parents[1] / "work" / "sql-on-fhir" / "test_report.json"
    )
)
# Experimental cases not translated, and why (the shareable ones must all pass).
NOT_SUPPORTED = {
    ("fn_boundary.json", 0): "a decimal's precision is its JSON text's, which from_json does not keep",
    ("fn_boundary.json", 1): "a decimal's precision is its JSON text's, which from_json does not keep",
}


def _cases() -> list[Any]:
    params = []
    for file in FILES.values():
        for index in range(len(file.tests)):
            marks = [pytest.mark.spark]
            if (file.name, index) in NOT_SUPPORTED:
                marks.append(pytest.mark.xfail(reason=NOT_SUPPORTED[file.name, index], strict=True))
            params.append(pytest.param(file.name, index, id=f"{Path(file.name).stem}-{index}", marks=marks))
    return params


@pytest.fixture(scope="module")
def results() -> Iterator[list[runner.CaseResult]]:
    """The cases' results, written as the suite's report once the module's cases ran."""
    collected: list[runner.CaseResult] = []
    yield collected
    if collected:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps(runner.report(collected), indent=2) + "\n", encoding="utf-8")


@pytest.mark.parametrize(("file_name", "index"), _cases())
def test_suite_case(spark: Any, results: list[runner.CaseResult], file_name: str, index: int) -> None:
    file = FILES[file_name]
    result = runner.run_case(spark, file, index)
    results.append(result)
    case = file.tests[index]
    assert result.passed, result.error
    if "expect" in case:  # the verdict above, checked again here without the runner's own comparison
        assert sorted(map(_key, result.rows or [])) == sorted(map(_key, case["expect"]))


def _key(row: dict[str, Any]) -> str:
    """A row as sortable text; an integral number is the same as the integer (5.0 == 5), as in JSON's meaning."""

    def plain(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return json.dumps({k: plain(v) for k, v in row.items()}, sort_keys=True)


def test_the_suite_is_the_one_the_goal_counts() -> None:
    tags = [tag for file in FILES.values() for case in file.tests for tag in case.get("tags", [])]
    assert (len(FILES), tags.count("shareable"), tags.count("experimental")) == (22, 123, 11)


# -- beyond the suite ---------------------------------------------------------------------------------------------


def _frame(spark: Any, rows: list[tuple[str, dict[str, str]]]) -> Any:
    return spark.createDataFrame(
        [(f"file:/landing/{i}.json", json.dumps(resource), refs) for i, (resource, refs) in enumerate(rows)],
        "sourcename string, resource_json string, ref_map map<string,string>",
    )


@pytest.mark.spark
def test_references_resolve_through_the_bundle_map_and_keep_columns(spark: Any) -> None:
    encounter = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "urn:uuid:abc"},
        "participant": [
            {"individual": {"reference": "Practitioner/p1/_history/3"}},
            {"individual": {"reference": "https://x.org/fhir/PractitionerRole/r1"}},
            {"individual": {"reference": "Practitioner?identifier=http://npi|123"}},
        ],
    }
    view = compile_view(
        {
            "resource": "Encounter",
            "select": [
                {
                    "column": [
                        {"name": "id", "path": "getResourceKey()"},
                        {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                        {"name": "not_a_group", "path": "subject.getReferenceKey(Group)"},
                        {"name": "any", "path": "participant.individual.getReferenceKey()", "collection": True},
                        {
                            "name": "roles",
                            "path": "participant.individual.getReferenceKey(PractitionerRole)",
                            "collection": True,
                        },
                    ]
                }
            ],
        }
    )
    frame = _frame(spark, [(encounter, {"urn:uuid:abc": "Patient/pt-9"}), ({"resourceType": "Patient", "id": "x"}, {})])
    rows = [r.asDict() for r in view.apply(frame, "sourcename").collect()]
    assert rows == [
        {
            "sourcename": "file:/landing/0.json",
            "id": "e1",
            "patient": "pt-9",
            "not_a_group": None,
            "any": ["p1", "r1"],  # a conditional reference names no key
            "roles": ["r1"],
        }
    ]
    # Without a ref_map column references are taken as written: urn:uuid names no key.
    plain = frame.drop("ref_map")
    assert [r["patient"] for r in view.apply(plain).collect()] == [None]


@pytest.mark.spark
def test_r5_resources_compile_against_the_r5_model(spark: Any) -> None:
    encounter = {
        "resourceType": "Encounter",
        "id": "e5",
        "status": "completed",
        "class": [{"coding": [{"code": "IMP"}]}, {"coding": [{"code": "ACUTE"}]}],
        "actualPeriod": {"start": "2024-01-02T03:04:05Z"},
    }
    view = compile_view(
        {
            "resource": "Encounter",
            "select": [
                {"column": [{"name": "id", "path": "id"}, {"name": "start", "path": "actualPeriod.start"}]},
                {
                    "forEach": "class",
                    "column": [{"name": "i", "path": "%rowIndex"}, {"name": "code", "path": "coding.code.first()"}],
                },
            ],
        },
        fhir_version="R5",
    )
    rows = {tuple(r) for r in view.apply(_frame(spark, [(encounter, {})])).collect()}
    assert rows == {("e5", "2024-01-02T03:04:05Z", 0, "IMP"), ("e5", "2024-01-02T03:04:05Z", 1, "ACUTE")}


@pytest.mark.spark
def test_run_time_checks_fail_the_job_naming_the_column_not_the_data(spark: Any) -> None:
    patient = {"resourceType": "Patient", "id": "p", "name": [{"family": "Secret1"}, {"family": "Secret2"}]}
    view = compile_view({"resource": "Patient", "select": [{"column": [{"name": "family", "path": "name.family"}]}]})
    with pytest.raises(Exception) as raised:
        view.apply(_frame(spark, [(patient, {})])).collect()
    message = runner.error_line(raised.value)
    assert "view 'Patient': column 'family' has more than one value" in message
    assert "Secret" not in message
    nested = {
        "resourceType": "QuestionnaireResponse",
        "id": "q",
        "item": [{"linkId": "1", "item": [{"linkId": "1.1"}]}],
    }
    shallow = compile_view(
        {
            "resource": "QuestionnaireResponse",
            "select": [{"repeat": ["item"], "column": [{"name": "l", "path": "linkId"}]}],
        },
        max_depth=0,
    )
    with pytest.raises(Exception) as raised:
        shallow.apply(_frame(spark, [(nested, {})])).collect()
    assert "repeat ['item'] nests deeper than 0 levels" in runner.error_line(raised.value)
    deep_enough = compile_view(
        {
            "resource": "QuestionnaireResponse",
            "select": [{"repeat": ["item"], "column": [{"name": "l", "path": "linkId"}]}],
        },
        max_depth=1,
    )
    assert [r["l"] for r in deep_enough.apply(_frame(spark, [(nested, {})])).collect()] == ["1", "1.1"]
