"""The reference's generated sections (docs/reference.md) match their source: the mapping
(streaming/fhir/mapping.py) and the reason codes (streaming/fhir/reasons.py); one FHIR id pattern serves every check.
"""

from __future__ import annotations

import re
from pathlib import Path

from streaming.fhir import mapping, reasons
from streaming.fhir.mapping import RULES
from streaming.viewdef import compiler

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference.md"


def test_every_rule_is_in_the_reference() -> None:
    text = REFERENCE.read_text()
    for rule in RULES:
        assert f"| `{rule.column}` | " in text


def test_every_rule_reads_a_column_of_both_views_and_each_column_is_read() -> None:
    """The rules and the `encounter` views agree: each rule's column is in the R4 and the R5 view, the two views
    give the same columns, and every view column is a rule's value or a fallback's input."""
    columns = {v: [name for name, _, _ in mapping.view_columns(v)] for v in ("R4", "R5")}
    assert columns["R4"] == columns["R5"]
    used = {rule.source for rule in RULES} | {
        name for name in columns["R4"] for rule in RULES if rule.fallback and f".{name}" in rule.fallback
    }
    assert used == set(columns["R4"])
    for version in ("R4", "R5"):
        view = mapping.encounter_view(version)
        assert view.one_row, f"the {version} encounter view gives several rows per Encounter"
        assert "raise_error" not in view.rows_sql, "an Encounter could fail the job (a many-valued column)"


def test_required_bronze_columns_are_mapped() -> None:
    required = {
        "encounter_id",
        "status",
        "encounter_type",
        "patient_ref",
        "admission_time",
        "discharge_time",
        "department",
        "participant_role",
        "practitioner_ref",
        "hospital_name",
    }
    assert required <= {rule.column for rule in RULES}


def test_reference_lists_every_reason_code() -> None:
    """Every code in the table has a reference row; no rejecting module keeps a code of its own outside the table."""
    from streaming.bronze import flatten, records
    from streaming.fhir import bytestream, parse

    text = REFERENCE.read_text()
    codes = [
        value
        for module in (bytestream, parse, records, flatten)
        for name, value in vars(module).items()
        if name.isupper()
        and isinstance(value, str)
        and value.islower()
        and " " not in value
        and not value.startswith("_")  # reason codes: lower_snake constants (not the __unknown__ partition)
    ]
    assert set(codes) <= reasons.CODES, f"reason codes outside streaming/fhir/reasons.py: {set(codes) - reasons.CODES}"
    assert len(reasons.CODES) == len(reasons.REASONS) >= 14
    missing = [r.code for r in reasons.REASONS if f"| `{r.code}` |" not in text]
    assert not missing, f"reason codes not documented in docs/reference.md: {missing}"


def test_reason_constants_are_exactly_the_table() -> None:
    """The code constants reasons.py exports are the table's codes, each once; every stage used is described."""
    constants = [value for name, value in vars(reasons).items() if name.isupper() and isinstance(value, str)]
    assert sorted(constants) == sorted(r.code for r in reasons.REASONS)
    assert len(set(constants)) == len(constants)
    assert {r.raised_in for r in reasons.REASONS} == set(reasons.STAGES)


def test_one_fhir_id_pattern_in_every_form() -> None:
    """The anchored form, the practitioner reference pattern and the reference text all spell mapping.FHIR_ID."""
    assert f"^{mapping.FHIR_ID}\\z" == mapping.FHIR_ID_RE  # Java's end of text (tests/test_flatten.py runs it)
    ids = ["a", "A-1.b", "x" * 64, "2f0c.9-Z"]
    not_ids = ["", "x" * 65, "has space", "a_b", "é", "a/b", "a\n"]
    assert [bool(re.fullmatch(mapping.FHIR_ID, s)) for s in ids + not_ids] == [True] * 4 + [False] * 7
    # getReferenceKey(), which tells a practitioner's reference in the encounter view, spells the same id.
    reference = re.compile(compiler._REFERENCE)
    assert reference.match("Practitioner/" + "x" * 64 + "/_history/2")
    assert not reference.match("Practitioner/" + "x" * 65)
    assert not reference.match("Practitioner/a_b")
    assert compiler._REFERENCE.count(mapping.FHIR_ID) == 2
    assert f"(`{mapping.FHIR_ID}`)" in REFERENCE.read_text()
