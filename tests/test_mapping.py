"""The README's mapping section is generated from streaming/mapping.py and must match it."""

from __future__ import annotations

from pathlib import Path

from streaming.mapping import RULES, render_readme

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_mapping_is_current() -> None:
    text = README.read_text()
    assert render_readme(text) == text, "README mapping is stale: run `python -m streaming.mapping`"


def test_every_rule_is_in_the_readme() -> None:
    text = README.read_text()
    for rule in RULES:
        assert f"| `{rule.column}` | `{rule.r4}` | `{rule.r5}` |" in text


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


def test_readme_lists_every_reason_code() -> None:
    from streaming import flatten, parse

    text = README.read_text()
    codes = [
        value
        for module in (parse, flatten)
        for name, value in vars(module).items()
        if name.isupper()
        and isinstance(value, str)
        and value.islower()
        and " " not in value
        and not value.startswith("_")  # reason codes: lower_snake constants (not the __unknown__ partition)
    ]
    assert len(codes) >= 14
    missing = [c for c in codes if f"| `{c}` |" not in text]
    assert not missing, f"reason codes not documented in README: {missing}"
