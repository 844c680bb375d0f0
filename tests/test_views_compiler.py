"""The view compiler without Spark: static checks, the read schema it derives, output columns, the type model,
its generator, and the runner's row comparison."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streaming.viewdef import (
    FhirPathSyntaxError,
    FhirTypeError,
    InvalidView,
    NotBoolean,
    UnionMismatch,
    UnknownConstant,
    UnknownElement,
    Unsupported,
    ViewColumn,
    ViewError,
    _gen_model,
    compile_view,
    model,
)
from streaming.views.runner import mismatch


def _columns(*columns: tuple[str, str]) -> dict[str, Any]:
    """A select of (name, path) columns."""
    return {"column": [{"name": n, "path": p} for n, p in columns]}


def _view(*columns: tuple[str, str], resource: str = "Patient", **extra: Any) -> dict[str, Any]:
    return {"resource": resource, "select": [_columns(*columns)], **extra}


# -- static checks ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("view", "error", "says"),
    [
        ({}, InvalidView, "`resource` (the resource type) is required"),
        ({"resource": "Patient"}, InvalidView, "select must be a non-empty list"),
        ({"resource": "Basic", "select": [{"column": []}]}, InvalidView, "no R4 type model for resource 'Basic'"),
        ({"resource": "Patient", "select": [{"column": []}]}, InvalidView, "the view has no columns"),
        ({"resource": "Patient", "select": [{"forEach": 1}]}, InvalidView, "forEach must be a FHIRPath text"),
        ({"resource": "Patient", "select": [{"forEach": "@@"}]}, FhirPathSyntaxError, "forEach '@@'"),
        ({"resource": "Patient", "select": [{"forEeach": "name"}]}, InvalidView, "unknown keys ['forEeach']"),
        (
            {"resource": "Patient", "select": [{"forEach": "name", "forEachOrNull": "name"}]},
            InvalidView,
            "both forEach and forEachOrNull",
        ),
        (_view(("1st", "id")), InvalidView, "column name '1st' is not a name"),
        (_view(("a", "id"), ("a", "gender")), InvalidView, "column name 'a' is used twice"),
        (_view(("a", "name")), FhirTypeError, "gives HumanName values, not a primitive type"),
        (_view(("a", "deceased")), FhirTypeError, "choice element 'deceased' needs ofType()"),
        (_view(("a", "name.famly")), UnknownElement, "HumanName has no element 'famly'"),
        (_view(("a", "name.where(use = %nope).family")), UnknownConstant, "%nope is not a constant"),
        (_view(("a", "id"), where=[{"path": "name.family"}]), NotBoolean, "where path is string, not boolean"),
        (_view(("a", "id"), where=[{"path": "gender"}]), NotBoolean, "is code, not boolean"),
        (_view(("a", "name.where(family).exists()")), NotBoolean, "where() criteria is string"),
        (_view(("a", "active and gender")), NotBoolean, "right operand of and is code"),
        (_view(("a", "gender = 1")), FhirTypeError, "'=' compares code with integer"),
        (_view(("a", "gender > 'x' + 1")), FhirTypeError, "'+' needs numbers, got string and integer"),
        (_view(("a", "name.given.aggregate($this)")), Unsupported, "function aggregate() is not supported"),
        (_view(("a", "name ~ name")), Unsupported, "operator '~' is not supported"),
        (_view(("a", "name.getResourceKey()")), FhirTypeError, "getResourceKey() applies to the view's resource"),
        (_view(("a", "name.getReferenceKey()")), FhirTypeError, "getReferenceKey() applies to a Reference"),
        (_view(("a", "link.other.getReferenceKey(Patent)")), FhirTypeError, "'Patent' is not a R4 resource type"),
        (
            _view(("a", "value.ofType(Quantiti)"), resource="Observation"),
            FhirTypeError,
            "'Quantiti' is not a FHIR type",
        ),
        (_view(("a", "name.first(1)")), FhirTypeError, "first() takes 0..0 arguments, got 1"),
        (_view(("a", "birthDate.matches('^1')")), FhirTypeError, "matches() applies to text, not date"),
        (_view(("a", "gender.matches(1)")), FhirTypeError, "matches() pattern must be text, got integer"),
        (_view(("a", "gender.replaceMatches('a')")), FhirTypeError, "replaceMatches() takes 2..2 arguments, got 1"),
        (_view(("a", "active.trim()")), FhirTypeError, "trim() applies to text, not boolean"),
        (
            _view(("a", "value.ofType(Quantity).value.lowBoundary()"), resource="Observation"),
            Unsupported,
            "lowBoundary() of decimal is not supported",
        ),
        (_view(("a", "id"), constant=[{"name": "c"}]), InvalidView, "constant 'c' needs exactly one value[x]"),
        (
            _view(("a", "id"), constant=[{"name": "c", "valueInteger": 1.5}]),
            InvalidView,
            "constant 'c' is not an integer",
        ),
        (
            _view(("a", "id"), constant=[{"name": "c", "valueHumanName": {}}]),
            InvalidView,
            "valueHumanName is not a primitive type",
        ),
        (
            {
                "resource": "Patient",
                "select": [
                    {"unionAll": [{"column": [{"name": "a", "path": "id"}]}, {"column": [{"name": "b", "path": "id"}]}]}
                ],
            },
            UnionMismatch,
            "[('a', 'string')] and [('b', 'string')]",
        ),
        (
            {
                "resource": "Patient",
                "select": [
                    {
                        "unionAll": [
                            {"column": [{"name": "a", "path": "id"}]},
                            {"column": [{"name": "a", "path": "active"}]},
                        ]
                    }
                ],
            },
            UnionMismatch,
            "[('a', 'string')] and [('a', 'boolean')]",
        ),
        (
            {"resource": "QuestionnaireResponse", "select": [{"repeat": ["item.where(linkId = '1')"]}]},
            Unsupported,
            "is not an element path",
        ),
        (
            {"resource": "QuestionnaireResponse", "select": [{"repeat": ["item", "item.answer"]}]},
            FhirTypeError,
            "reach different types",
        ),
    ],
)
def test_static_checks_raise_a_named_error(view: dict[str, Any], error: type[ViewError], says: str) -> None:
    with pytest.raises(error) as raised:
        compile_view(view)
    assert says in str(raised.value)


def test_every_compile_error_is_a_view_error_and_a_value_error() -> None:
    for error in (InvalidView, FhirPathSyntaxError, UnknownConstant, NotBoolean, UnionMismatch, UnknownElement):
        assert issubclass(error, ViewError) and issubclass(error, ValueError)


def test_unknown_fhir_version_is_refused() -> None:
    with pytest.raises(InvalidView, match="unknown FHIR version 'R3'"):
        compile_view(_view(("id", "id")), fhir_version="R3")


# -- what a view reads and gives --------------------------------------------------------------------------------


def test_read_schema_holds_only_what_the_view_reads() -> None:
    view = compile_view(
        _view(
            ("id", "getResourceKey()"),
            ("family", "name.where(use = 'official').family.first()"),
            ("dead", "deceased.ofType(boolean)"),
            ("has_phone", "telecom.exists()"),
            ("gp", "generalPractitioner.getReferenceKey(Practitioner).first()"),
        )
    )
    assert view.read_schema == (
        "struct<`id`: string, `name`: array<struct<`use`: string, `family`: string>>, `deceasedBoolean`: boolean,"
        " `telecom`: array<struct<`id`: string>>, `generalPractitioner`: array<struct<`reference`: string>>,"
        " `resourceType`: string>"
    )
    assert view.resource == "Patient" and view.fhir_version == "R4"


def test_columns_take_the_declared_type_else_the_paths() -> None:
    view = compile_view(
        {
            "name": "obs",
            "resource": "Observation",
            "select": [
                {
                    "column": [
                        {"name": "id", "path": "id", "type": "id"},
                        {"name": "value", "path": "value.ofType(Quantity).value"},
                        {"name": "count", "path": "component.count()"},
                        {"name": "codes", "path": "code.coding.code", "collection": True},
                        {"name": "as_text", "path": "value.ofType(integer)", "type": "string"},
                        {"name": "nothing", "path": "{}"},
                    ]
                }
            ],
        }
    )
    assert view.name == "obs"
    assert view.columns == (
        ViewColumn("id", "id", "string", False),
        ViewColumn("value", "decimal", model.DECIMAL, False),
        ViewColumn("count", "integer", "int", False),
        ViewColumn("codes", "code", "array<string>", True),
        ViewColumn("as_text", "string", "string", False),
        ViewColumn("nothing", "string", "string", False),
    )
    assert "CAST(_r.`valueInteger` AS string)" in view.rows_sql


def test_column_order_is_column_then_select_then_union() -> None:
    view = compile_view(
        {
            "resource": "Patient",
            "select": [
                {
                    "unionAll": [
                        {"column": [{"name": "e", "path": "'x'"}]},
                        {"column": [{"name": "e", "path": "'y'"}]},
                    ],
                    "select": [{"forEach": "name", "column": [{"name": "c", "path": "family"}]}],
                    "column": [{"name": "a", "path": "id"}],
                },
                {"column": [{"name": "g", "path": "gender"}]},
            ],
        }
    )
    assert [c.name for c in view.columns] == ["a", "c", "e", "g"]


_ONE_NAME = {"forEachOrNull": "name.first()", "column": [{"name": "family", "path": "family"}]}


@pytest.mark.parametrize(
    ("selects", "where", "one_row", "row_form"),
    [
        ([_columns(("id", "id"))], False, True, True),
        ([_columns(("id", "id")), _ONE_NAME], False, True, True),  # one item or none: bound, one row
        ([_columns(("id", "id")), {**_ONE_NAME, "forEachOrNull": "name"}], False, False, False),  # several names
        ([_columns(("id", "id")), {"forEach": "name.first()", "column": _ONE_NAME["column"]}], False, False, False),
        ([{"unionAll": [_columns(("id", "id")), _columns(("id", "gender"))]}], False, False, False),
        ([_columns(("id", "id"))], True, False, False),  # a where drops resources
    ],
)
def test_a_view_knows_when_it_gives_one_row_per_resource(
    selects: list[dict[str, Any]], where: bool, one_row: bool, row_form: bool
) -> None:
    """`one_row` from the view's shape alone; the row form (column SQL over bindings) only for such views."""
    view = compile_view(
        {"resource": "Patient", "select": selects, **({"where": [{"path": "active"}]} if where else {})}
    )
    assert (view.one_row, view.row_sql is not None) == (one_row, row_form)
    if view.row_sql is not None:
        assert len(view.row_sql) == len(view.columns)
        assert all("transform(" not in sql for sql in view.row_sql), "a one-row view's columns need no loop"
    if selects[-1] is _ONE_NAME:
        ((name, sql),) = view.bindings  # the forEachOrNull's item, read by its column
        assert sql == "get(_r.`name`, 0)" and view.row_sql == ("_r.`id`", f"{name}.`family`")


def test_a_union_of_two_items_first_is_their_coalesce_and_a_typed_key_one_regex() -> None:
    view = compile_view(
        _view(
            ("g", "(name.first().family | name.first().text).first()"),
            ("org", "managingOrganization.getReferenceKey(Organization)"),
        )
    )
    assert view.row_sql is not None
    gender, org = view.row_sql
    assert gender.startswith("coalesce((get(_r.`name`, 0)).`family`, ")
    assert org.count("regexp_extract") == 1 and "Organization/(" in org


def test_a_repeat_reads_each_level_to_the_depth_bound_and_fails_past_it() -> None:
    view = compile_view(
        {
            "resource": "QuestionnaireResponse",
            "select": [{"repeat": ["item"], "column": [{"name": "link", "path": "linkId"}]}],
        },
        max_depth=2,
    )
    level0 = "struct<`item`: array<string>, `linkId`: string>"  # the level past the bound: raw JSON, to notice it
    level1 = f"struct<`item`: array<{level0}>, `linkId`: string>"
    assert (
        view.read_schema
        == f"struct<`item`: array<struct<`item`: array<{level1}>, `linkId`: string>>, `resourceType`: string>"
    )
    assert (
        "raise_error('view \\'QuestionnaireResponse\\': repeat [\\'item\\'] nests deeper than 2 levels')"
        in view.rows_sql
    )


def test_r4_and_r5_models_give_each_version_its_own_elements() -> None:
    r4 = compile_view(_view(("c", "class.code"), resource="Encounter"))
    assert "`class`: struct<`code`: string>" in r4.read_schema
    r5 = compile_view(_view(("c", "class.coding.code.first()"), resource="Encounter"), fhir_version="R5")
    assert "`class`: array<struct<`coding`: array<struct<`code`: string>>>>" in r5.read_schema
    with pytest.raises(UnknownElement, match="Coding has no element 'coding'"):
        compile_view(_view(("c", "class.coding.code"), resource="Encounter"))
    with pytest.raises(UnknownElement, match="Encounter has no element 'period'"):
        compile_view(_view(("p", "period.start"), resource="Encounter"), fhir_version="R5")


# -- the type model and its generator -----------------------------------------------------------------------------


def test_type_model_has_choices_cardinality_and_recursion() -> None:
    r4 = model.load("R4")
    assert r4.element("Patient", "name") == model.Element("name", ("HumanName",), True, False)
    assert r4.element("Patient", "deceased") == model.Element("deceased", ("boolean", "dateTime"), False, True)
    assert r4.element("Patient", "deceasedBoolean") is None
    assert r4.element("QuestionnaireResponse.item", "item") == model.Element(
        "item", ("QuestionnaireResponse.item",), True, False
    )
    assert r4.element("QuestionnaireResponse.item.answer", "item").types == ("QuestionnaireResponse.item",)
    assert r4.element("Encounter", "class") == model.Element("class", ("Coding",), False, False)
    assert model.load("R5").element("Encounter", "class") == model.Element("class", ("CodeableConcept",), True, False)
    assert "Quantity" in r4.element("Observation", "value").types
    assert "integer64" in model.load("R5").primitives and "integer64" not in r4.primitives
    for name in ("Encounter", "Patient", "Practitioner", "PractitionerRole", "Organization", "Location", "Condition"):
        assert r4.is_resource(name) and model.load("R5").is_resource(name), name


def test_committed_model_stays_small() -> None:
    assert model.MODEL_FILE.stat().st_size < 200_000


def _sd(kind: str, type_name: str, elements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "kind": kind,
        "derivation": "specialization",
        "type": type_name,
        "snapshot": {"element": [{"path": type_name, "max": "*"}, *elements]},
    }


def test_generator_reads_structure_definitions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    string_id = {
        "code": "http://hl7.org/fhirpath/System.String",
        "extension": [{"url": _gen_model._FHIR_TYPE_EXT, "valueUrl": "id"}],
    }
    definitions = {
        "string": _sd("primitive-type", "string", []),
        "boolean": _sd("primitive-type", "boolean", []),
        "id": _sd("primitive-type", "id", []),
        "Coding": _sd("complex-type", "Coding", [{"path": "Coding.code", "max": "1", "type": [{"code": "string"}]}]),
        "Unused": _sd("complex-type", "Unused", [{"path": "Unused.x", "max": "1", "type": [{"code": "string"}]}]),
        "Thing": _sd(
            "resource",
            "Thing",
            [
                {"path": "Thing.id", "max": "1", "type": [string_id]},
                {"path": "Thing.meta", "max": "1", "type": [{"code": "Coding"}]},
                {"path": "Thing.value[x]", "max": "1", "type": [{"code": "boolean"}, {"code": "Coding"}]},
                {"path": "Thing.part", "max": "*", "type": [{"code": "BackboneElement"}]},
                {"path": "Thing.part.label", "max": "1", "type": [{"code": "string"}]},
                {"path": "Thing.part.part", "max": "*", "contentReference": "#Thing.part"},
                {"path": "Thing.gone", "max": "0", "type": [{"code": "string"}]},
            ],
        ),
    }
    for name, sd in definitions.items():
        (tmp_path / f"StructureDefinition-{name}.json").write_text(json.dumps(sd))
    monkeypatch.setattr(_gen_model, "RESOURCES", ("Thing",))
    assert _gen_model.build(tmp_path) == {
        "primitives": ["boolean", "id", "string"],
        "resources": ["Thing"],
        "types": {
            "Coding": {"code": "string"},
            "Thing": {"id": "id", "meta": "Coding", "value[x]": "boolean|Coding", "part": "Thing.part*"},
            "Thing.part": {"label": "string", "part": "Thing.part*"},
        },
    }
    out = tmp_path / "model.json"
    _gen_model.main(["--r4", str(tmp_path), "--r5", str(tmp_path), "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["R4"] == written["R5"] == _gen_model.build(tmp_path)


# -- the runner's comparison ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actual", "expected", "problem"),
    [
        ([{"a": 1}, {"a": 2}], [{"a": 2}, {"a": 1}], None),  # order does not matter
        ([{"a": 5}], [{"a": 5.0}], None),  # numbers compare by value
        ([{"a": 1.5}], [{"a": 1.50}], None),
        ([{"a": ["x", "y"]}], [{"a": ["x", "y"]}], None),
        ([{"a": ["y", "x"]}], [{"a": ["x", "y"]}], "1 of 1 expected rows not found"),  # a collection keeps its order
        ([{"a": True}], [{"a": 1}], "1 of 1 expected rows not found"),  # a boolean is not a number
        ([{"a": None}], [{"a": None}], None),
        ([{"a": 1}, {"a": 1}], [{"a": 1}, {"a": 2}], "1 of 2 expected rows not found"),  # duplicates count
        ([{"a": 1}], [], "expected 0 rows, got 1"),
        ([{"a": 1}], [{"b": 1}], "expected columns ['b'], got ['a']"),
        ([{"a": 1, "b": None}], [{"a": 1}], "expected columns ['a'], got ['a', 'b']"),
    ],
)
def test_rows_compare_as_the_reference_runner_does(
    actual: list[dict[str, Any]], expected: list[dict[str, Any]], problem: str | None
) -> None:
    assert mismatch(actual, expected) == problem
