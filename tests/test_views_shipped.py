"""The shipped views (streaming/viewdef/shipped/): each one's rows equal a plain-Python reading of the same JSON.

R4: the bulk export of 10 Synthea patients (../shared/fhir-samples/bulk-10-patients) and the Synthea Bundles
(Observations, `urn:uuid:` references). R5: tests/fixtures/views/r5-resources.ndjson. The expected rows are
computed here from the resources' JSON, never by the compiler.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from benchmarks.shared_data import BULK, SYNTHEA
from streaming.config import ConfigError, FhirConfig
from streaming.viewdef.shipped import SHIPPED_VIEWS, UnknownView, definition, has_variant, shipped_view
from streaming.views import commands, source

R5_FIXTURE = Path(__file__).parent / "fixtures" / "views" / "r5-resources.ndjson"
NPI = "http://hl7.org/fhir/sid/us-npi"
RESOURCE = {
    "encounter": "Encounter",
    "patient": "Patient",
    "practitioner": "Practitioner",
    "practitioner_role": "PractitionerRole",
    "organization": "Organization",
    "location": "Location",
    "condition": "Condition",
    "observation": "Observation",
    "encounter_reference": "Encounter",
}

Resource = dict[str, Any]
Refs = dict[str, str]  # a Bundle's fullUrl -> `Type/id`


# -- reading the JSON here ----------------------------------------------------------------------------------------


def resources_in(path: Path) -> Iterator[tuple[Resource, Refs]]:
    """Every resource of an NDJSON file or a Bundle file, with its Bundle's fullUrl map (empty for NDJSON)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ndjson":
        for line in text.splitlines():
            if line.strip():
                yield json.loads(line, parse_float=Decimal), {}
        return
    bundle = json.loads(text, parse_float=Decimal)
    refs = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
    for entry in bundle["entry"]:
        yield entry["resource"], refs


def _first(items: Any) -> Any:
    return items[0] if isinstance(items, list) and items else None


def _coding(concept: Any) -> dict[str, Any]:
    return _first((concept or {}).get("coding")) or {}


def _key(reference: Any, kind: str, refs: Refs) -> str | None:
    """The id a literal reference `Type/id` (relative or absolute, through the Bundle's fullUrls) names."""
    text = (reference or {}).get("reference")
    if text is None:
        return None
    found = re.fullmatch(r"(?:https?://.*/)?([A-Za-z]+)/([A-Za-z0-9.-]{1,64})(?:/_history/.*)?", refs.get(text, text))
    return found.group(2) if found and found.group(1) == kind else None


def _token(reference: Any) -> str | None:
    """The identifier a reference names: Reference.identifier, else a conditional reference's `system|value`."""
    reference = reference or {}
    identifier = reference.get("identifier") or {}
    if identifier.get("system") and identifier.get("value"):
        return f"{identifier['system']}|{identifier['value']}"
    found = re.match(r"[A-Za-z]+\?identifier=(.*)", reference.get("reference") or "")
    return found.group(1) if found else None


def _identifiers(r: Resource) -> list[str]:
    return [f"{i['system']}|{i['value']}" for i in r.get("identifier", []) if i.get("system") and i.get("value")]


def _npi(r: Resource) -> str | None:
    return next((i["value"] for i in r.get("identifier", []) if i.get("system") == NPI and "value" in i), None)


def _names(r: Resource) -> dict[str, Any]:
    name = _first(r.get("name"))
    if name is None:
        return {"family": None, "given": None, "name": None}
    given = name.get("given", [])
    parts = [*name.get("prefix", []), *given, name.get("family", "")]
    return {
        "family": name.get("family"),
        "given": " ".join(given) if given else None,
        "name": " ".join(p for p in parts if p),
    }


def _time(r: Resource, element: str, *types: str) -> str | None:
    """The first of `<element>DateTime`, `<element>Instant`, `<element>Period.start` present."""
    for kind in types:
        value = r.get(element + kind)
        if kind == "Period":
            value = (value or {}).get("start")
        if value is not None:
            return str(value)
    return None


# -- each view's expected row, from the JSON ----------------------------------------------------------------------


def _either(value: Any, other: Any) -> Any:
    """`(value | other).first()`: the first unless it is missing."""
    return other if value is None else value


def _is_practitioner(participant: Resource, refs: Refs, version: str) -> bool:
    """A participant whose reference names a Practitioner or PractitionerRole (literal, through the Bundle, or
    conditional) or whose Reference.type says it is one."""
    reference = participant.get("individual" if version == "R4" else "actor") or {}
    kinds = ("Practitioner", "PractitionerRole")
    return (
        any(_key(reference, kind, refs) is not None for kind in kinds)
        or re.match(r"(Practitioner|PractitionerRole)\?", reference.get("reference") or "") is not None
        or reference.get("type") in kinds
    )


def encounter(r: Resource, refs: Refs, version: str) -> dict[str, Any]:
    if version == "R5":  # R5: class a list of CodeableConcepts, actualPeriod, participant.actor
        concept = _first(r.get("class")) or {}
        code, display = _coding(concept).get("code"), _either(_coding(concept).get("display"), concept.get("text"))
        period, actor = r.get("actualPeriod") or {}, "actor"
    else:
        code, display = (r.get("class") or {}).get("code"), (r.get("class") or {}).get("display")
        period, actor = r.get("period") or {}, "individual"
    location = (_first(r.get("location")) or {}).get("location") or {}
    provider = r.get("serviceProvider") or {}
    chosen = next((p for p in r.get("participant", []) if _is_practitioner(p, refs, version)), {})
    role = _first(chosen.get("type")) or {}
    return {
        "id": r["id"],
        "status": r.get("status"),
        "class_code": code,
        "class_display": display,
        "patient_ref": (r.get("subject") or {}).get("reference"),
        "admission_time": period.get("start"),
        "discharge_time": period.get("end"),
        "department": location.get("display"),
        "department_reference": location.get("reference"),
        "hospital_name": provider.get("display"),
        "hospital_reference": provider.get("reference"),
        "last_updated": (r.get("meta") or {}).get("lastUpdated"),
        "participant_role": _either(_coding(role).get("code"), role.get("text")),
        "practitioner_ref": (chosen.get(actor) or {}).get("reference"),
    }


def patient(r: Resource, refs: Refs, version: str) -> dict[str, Any]:
    address = _first(r.get("address")) or {}
    return {
        "id": r["id"],
        "active": r.get("active"),
        "birth_date": r.get("birthDate"),
        "gender": r.get("gender"),
        "deceased": "deceasedDateTime" in r or r.get("deceasedBoolean") is True,
        "deceased_time": r.get("deceasedDateTime"),
        **_names(r),
        "city": address.get("city"),
        "state": address.get("state"),
        "postal_code": address.get("postalCode"),
        "managing_organization_id": _key(r.get("managingOrganization"), "Organization", refs),
        "managing_organization_identifier": _token(r.get("managingOrganization")),
    }


def practitioner(r: Resource, refs: Refs, version: str) -> dict[str, Any]:
    return {
        "id": r["id"],
        "active": r.get("active"),
        "npi": _npi(r),
        "identifiers": _identifiers(r),
        **_names(r),
        "gender": r.get("gender"),
    }


def _code(prefix: str, concept: Any) -> dict[str, Any]:
    coding = _coding(concept)
    first = "code" if prefix == "code" else f"{prefix}_code"
    return {
        first: coding.get("code"),
        f"{prefix}_system": coding.get("system"),
        f"{prefix}_display": coding.get("display"),
    }


def practitioner_role(r: Resource, refs: Refs, version: str) -> dict[str, Any]:
    location = _first(r.get("location"))
    return {
        "id": r["id"],
        "active": r.get("active"),
        "practitioner_id": _key(r.get("practitioner"), "Practitioner", refs),
        "practitioner_identifier": _token(r.get("practitioner")),
        "practitioner_display": (r.get("practitioner") or {}).get("display"),
        "organization_id": _key(r.get("organization"), "Organization", refs),
        "organization_identifier": _token(r.get("organization")),
        "organization_display": (r.get("organization") or {}).get("display"),
        "location_id": _key(location, "Location", refs),
        "location_identifier": _token(location),
        **_code("role", _first(r.get("code"))),
        **_code("specialty", _first(r.get("specialty"))),
    }


def organization(r: Resource, refs: Refs, version: str) -> dict[str, Any]:
    if version == "R5":  # R5 moved the address into contact (ExtendedContactDetail)
        address = next((c["address"] for c in r.get("contact", []) if "address" in c), {})
    else:
        address = _first(r.get("address")) or {}
    return {
        "id": r["id"],
        "active": r.get("active"),
        "name": r.get("name"),
        "npi": _npi(r),
        "identifiers": _identifiers(r),
        "type_code": _coding(_first(r.get("type"))).get("code"),
        "type_display": _coding(_first(r.get("type"))).get("display"),
        "part_of_id": _key(r.get("partOf"), "Organization", refs),
        "city": address.get("city"),
        "state": address.get("state"),
    }


def location(r: Resource, refs: Refs, version: str) -> dict[str, Any]:
    address = r.get("address") or {}
    return {
        "id": r["id"],
        "status": r.get("status"),
        "name": r.get("name"),
        "identifiers": _identifiers(r),
        "managing_organization_id": _key(r.get("managingOrganization"), "Organization", refs),
        "managing_organization_identifier": _token(r.get("managingOrganization")),
        "managing_organization_display": (r.get("managingOrganization") or {}).get("display"),
        "part_of_id": _key(r.get("partOf"), "Location", refs),
        "type_code": _coding(_first(r.get("type"))).get("code"),
        "city": address.get("city"),
        "state": address.get("state"),
    }


def condition(r: Resource, refs: Refs, version: str) -> dict[str, Any]:
    return {
        "id": r["id"],
        "patient_id": _key(r.get("subject"), "Patient", refs),
        "encounter_id": _key(r.get("encounter"), "Encounter", refs),
        **_code("code", r.get("code")),
        "code_text": (r.get("code") or {}).get("text"),
        "clinical_status": _coding(r.get("clinicalStatus")).get("code"),
        "verification_status": _coding(r.get("verificationStatus")).get("code"),
        "category": _coding(_first(r.get("category"))).get("code"),
        "onset_time": _time(r, "onset", "DateTime", "Period"),
        "abatement_time": _time(r, "abatement", "DateTime", "Period"),
        "recorded_date": r.get("recordedDate"),
    }


def observation(r: Resource, refs: Refs, version: str) -> dict[str, Any]:
    quantity = r.get("valueQuantity") or {}
    value = quantity.get("value")
    return {
        "id": r["id"],
        "status": r.get("status"),
        "category": _coding(_first(r.get("category"))).get("code"),
        **_code("code", r.get("code")),
        "patient_id": _key(r.get("subject"), "Patient", refs),
        "encounter_id": _key(r.get("encounter"), "Encounter", refs),
        "effective_time": _time(r, "effective", "DateTime", "Instant", "Period"),
        "issued": r.get("issued"),
        "value_quantity": None if value is None else Decimal(value),
        "value_unit": quantity.get("unit"),
        "value_code": _coding(r.get("valueCodeableConcept")).get("code"),
        "value_display": _coding(r.get("valueCodeableConcept")).get("display"),
        "value_string": r.get("valueString"),
        "value_boolean": r.get("valueBoolean"),
    }


def encounter_reference(r: Resource, refs: Refs, version: str) -> dict[str, Any]:
    location = (_first(r.get("location")) or {}).get("location")
    return {
        "id": r["id"],
        "patient_id": _key(r.get("subject"), "Patient", refs),
        "location_id": _key(location, "Location", refs),
        "location_identifier": _token(location),
        "location_display": (location or {}).get("display"),
        "service_provider_id": _key(r.get("serviceProvider"), "Organization", refs),
        "service_provider_identifier": _token(r.get("serviceProvider")),
        "service_provider_display": (r.get("serviceProvider") or {}).get("display"),
    }


EXPECTED: dict[str, Callable[[Resource, Refs, str], dict[str, Any]]] = {
    "encounter": encounter,
    "patient": patient,
    "practitioner": practitioner,
    "practitioner_role": practitioner_role,
    "organization": organization,
    "location": location,
    "condition": condition,
    "observation": observation,
    "encounter_reference": encounter_reference,
}


def expected_rows(name: str, paths: list[Path], version: str) -> list[dict[str, Any]]:
    return [
        EXPECTED[name](r, refs, version)
        for path in paths
        for r, refs in resources_in(path)
        if r["resourceType"] == RESOURCE[name]
    ]


def _hashable(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in row.items()))


def differences(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    """Rows only the view gave, rows only plain Python gave (as multisets: a duplicate row counts)."""
    got, want = Counter(map(_hashable, actual)), Counter(map(_hashable, expected))
    return sorted((got - want).elements(), key=repr), sorted((want - got).elements(), key=repr)


# -- pure: every shipped view compiles, by name -------------------------------------------------------------------


@pytest.mark.parametrize("version", ["R4", "R5"])
@pytest.mark.parametrize("name", SHIPPED_VIEWS)
def test_every_shipped_view_compiles_with_the_columns_plain_python_gives(name: str, version: str) -> None:
    view = shipped_view(name, version)
    assert (view.name, view.resource, view.fhir_version) == (name, RESOURCE[name], version)
    assert view.columns[0].name == "id" and definition(name, version)["select"][0]["column"][0]["path"] == (
        "getResourceKey()"
    )
    empty: Resource = {"resourceType": RESOURCE[name], "id": "x"}
    assert [c.name for c in view.columns] == list(EXPECTED[name](empty, {}, version))
    assert all(c.get("description") for c in definition(name, version)["select"][0]["column"])


def test_only_encounter_and_organization_have_an_r5_variant() -> None:
    assert [name for name in SHIPPED_VIEWS if has_variant(name, "R5")] == ["encounter", "organization"]
    assert not any(has_variant(name, "R4") for name in SHIPPED_VIEWS)
    for name in ("encounter", "organization"):
        r4, r5 = definition(name, "R4"), definition(name, "R5")
        assert {k: v for k, v in r4.items() if k != "select"} == {k: v for k, v in r5.items() if k != "select"}


@pytest.mark.parametrize(
    ("name", "version", "says"),
    [
        ("encounters", "R4", "no shipped view 'encounters' (shipped: encounter, patient, practitioner,"),
        ("patient", "R6", "unknown FHIR version 'R6' (one of R4, R5)"),
        ("../patient", "R4", "no shipped view '../patient'"),
    ],
)
def test_an_unknown_name_lists_the_shipped_ones(name: str, version: str, says: str) -> None:
    with pytest.raises(UnknownView) as raised:
        shipped_view(name, version)
    assert says in str(raised.value)


def test_views_run_takes_a_name_or_a_file(tmp_path: Path) -> None:
    assert commands.load_view("condition", "R4") is shipped_view("condition", "R4")
    with pytest.raises(ConfigError, match=r"^--view conditions: no shipped view 'conditions' \(shipped: encounter,"):
        commands.load_view("conditions", "R4")
    mine = tmp_path / "condition.json"  # a file of the same name: a path, never the shipped view
    mine.write_text(json.dumps({"resource": "Condition", "select": [{"column": [{"name": "c", "path": "id"}]}]}))
    assert [c.name for c in commands.load_view(str(mine), "R4").columns] == ["c"]


# -- slow: the rows, through `views run`'s own reading --------------------------------------------------------------


def _r4_paths() -> list[Path]:
    bundles = SYNTHEA / "bundles"
    return sorted(BULK.glob("*.ndjson")) + sorted(bundles.glob("*.json"))


# Rows per view over the bulk export and the three Synthea Bundles (the Bundles add 3 patients, 3 conditions and
# every observation): a change in what a view selects shows here, not only as a row mismatch.
ROWS_R4 = {
    "encounter": 1215 + 106,
    "patient": 13 + 3,
    "practitioner": 43,
    "practitioner_role": 43,
    "organization": 43,
    "location": 44,
    "condition": 555 + 3,
    "observation": 398,
    "encounter_reference": 1215 + 106,
}


@pytest.mark.spark
@pytest.mark.parametrize("name", SHIPPED_VIEWS)
def test_r4_rows_equal_plain_python(spark: Any, name: str) -> None:
    paths = _r4_paths()
    files = [f for p in paths for f in source.list_files(str(p))]
    table, skipped = commands.view_rows(spark, shipped_view(name, "R4"), files)
    actual = table.to_pylist()
    expected = expected_rows(name, paths, "R4")
    assert (len(actual), skipped) == (ROWS_R4[name], {})
    assert differences(actual, expected) == ([], [])


@pytest.mark.spark
@pytest.mark.parametrize("name", SHIPPED_VIEWS)
def test_r5_rows_equal_plain_python(spark: Any, name: str) -> None:
    table, _ = commands.view_rows(spark, shipped_view(name, "R5"), source.list_files(str(R5_FIXTURE)))
    actual = table.to_pylist()
    expected = expected_rows(name, [R5_FIXTURE], "R5")
    assert expected and differences(actual, expected) == ([], [])


@pytest.mark.spark
@pytest.mark.parametrize("version", ["R4", "R5"])
def test_the_encounter_views_row_form_gives_the_rows_its_array_gives(spark: Any, version: str) -> None:
    """What flatten projects (the bindings as columns, then each column's SQL) equals the view's `rows_sql`."""
    from pyspark.sql import functions as F

    view = shipped_view("encounter", version)
    assert view.row_sql is not None and view.bindings
    paths = _r4_paths() if version == "R4" else [R5_FIXTURE]
    files = [f for p in paths for f in source.list_files(str(p))]
    resources = source.read_resources(spark, files, FhirConfig()).where("resource_json IS NOT NULL")
    parsed = resources.select(view.parsed().alias("_r"), F.coalesce("ref_map", F.create_map()).alias("ref_map"))
    parsed = parsed.where("_r.resourceType = 'Encounter'")
    bound = parsed
    for name, sql in view.bindings:
        bound = bound.select("*", F.expr(sql).alias(name))
    by_row = bound.select(*view.row_columns())
    by_array = parsed.select(F.inline(F.expr(view.rows_sql)))
    rows, expected = by_row.collect(), by_array.collect()
    assert len(rows) == (ROWS_R4["encounter"] if version == "R4" else 2)
    assert differences([r.asDict() for r in rows], [r.asDict() for r in expected]) == ([], [])


@pytest.mark.spark
def test_a_one_item_for_each_or_null_inside_a_for_each_gives_each_items_row(spark: Any) -> None:
    """The bound item of a nested forEachOrNull over one value is bound inside the outer loop too."""
    from streaming.viewdef import compile_view

    view = compile_view(
        {
            "resource": "Patient",
            "select": [
                {
                    "forEach": "name",
                    "column": [{"name": "family", "path": "family"}],
                    "select": [{"forEachOrNull": "period", "column": [{"name": "since", "path": "start"}]}],
                }
            ],
        }
    )
    patient = {
        "resourceType": "Patient",
        "id": "p",
        "name": [{"family": "A", "period": {"start": "2020"}}, {"family": "B"}],
    }
    rows = view.apply(spark.createDataFrame([(json.dumps(patient),)], "resource_json string")).collect()
    assert [r.asDict() for r in rows] == [{"family": "A", "since": "2020"}, {"family": "B", "since": None}]
