"""The FHIR Encounter -> bronze column mapping: one table, read by `flatten.py` and shown in the README.

Each rule names a bronze column, the Spark SQL expression that finds its value in an R4 Encounter and in an R5
Encounter, an optional fallback when that is empty, and a `kind` that says how the raw value is normalised.
The expressions run over the parsed resource (`READ_SCHEMA`) plus the helper columns in `DERIVED`. Adding a
column is one line here (and `make readme-mapping` refreshes the README table).

One row per Encounter: list elements are never exploded; each column documents which element it takes.
"""

from __future__ import annotations

from dataclasses import dataclass

# The parts of an Encounter the bronze table reads, R4 and R5 together. `class` stays raw JSON text because it is
# one Coding in R4 and a list of CodeableConcepts in R5; DERIVED parses it per version.
_CODING = "struct<system: string, code: string, display: string>"
_CONCEPT = f"struct<coding: array<{_CODING}>, text: string>"
_REFERENCE = "struct<reference: string, type: string, display: string>"
_PERIOD = "struct<start: string, end: string>"
READ_SCHEMA = ", ".join(
    [
        "resourceType string",
        "id string",
        "meta struct<lastUpdated: string>",
        "status string",
        "class string",
        f"type array<{_CONCEPT}>",
        f"subject {_REFERENCE}",
        f"participant array<struct<type: array<{_CONCEPT}>, individual: {_REFERENCE}, actor: {_REFERENCE}>>",
        f"period {_PERIOD}",
        f"actualPeriod {_PERIOD}",
        f"location array<struct<location: {_REFERENCE}>>",
        f"serviceProvider {_REFERENCE}",
    ]
)

# A participant "is a practitioner" when its reference (resolved through the Bundle first) points at a
# Practitioner or PractitionerRole, relative, absolute or conditional, or when Reference.type says so.
_IS_PRACTITIONER = (
    "(coalesce(ref_map[{r}.reference], {r}.reference) rlike '(^|/)(Practitioner|PractitionerRole)([/?]|$)'"
    " OR {r}.type IN ('Practitioner', 'PractitionerRole'))"
)

# Helper columns, in order; each may use the ones before it.
DERIVED: dict[str, str] = {
    "class_r4": "CASE WHEN ltrim(class) LIKE '{%' THEN from_json(class, '" + _CODING + "') END",
    "class_r5": "CASE WHEN ltrim(class) LIKE '[%' THEN from_json(class, 'array<" + _CONCEPT + ">') END",
    "practitioner_r4": "filter(participant, p -> " + _IS_PRACTITIONER.format(r="p.individual") + ")[0]",
    "practitioner_r5": "filter(participant, p -> " + _IS_PRACTITIONER.format(r="p.actor") + ")[0]",
    # R5-only elements or status codes mark an R5 resource; everything else reads as R4.
    "fhir_version": (
        "CASE WHEN actualPeriod IS NOT NULL OR class_r5 IS NOT NULL"
        " OR exists(participant, p -> p.actor IS NOT NULL)"
        " OR status IN ('on-hold', 'discharged', 'completed', 'discontinued') THEN 'R5' ELSE 'R4' END"
    ),
}

# v3 ActCode encounter classes (R4 value set, also used by R5) -> the label analysts group by.
CLASS_LABELS: dict[str, str] = {
    "IMP": "Inpatient",
    "ACUTE": "Inpatient",
    "NONAC": "Inpatient",
    "SS": "Short stay",
    "OBSENC": "Observation",
    "PRENC": "Pre-admission",
    "AMB": "Outpatient-Ambulatory",
    "EMER": "Emergency",
    "HH": "Home health",
    "VR": "Virtual",
    "FLD": "Field",
}


@dataclass(frozen=True)
class Rule:
    """How one bronze column is found in an R4 and an R5 Encounter."""

    column: str
    kind: str  # text | reference (resolved via Bundle) | datetime (FHIR dateTime -> UTC) | class_label
    r4: str  # Spark SQL over READ_SCHEMA + DERIVED
    r5: str
    fallback: str | None  # Spark SQL used when the version's expression is null
    meaning: str


RULES: tuple[Rule, ...] = (
    Rule("encounter_id", "text", "id", "id", None,
         "Encounter.id, the record key; missing or not a FHIR id (`[A-Za-z0-9-.]{1,64}`) is quarantined"),
    Rule("status", "text", "status", "status", None,
         "status code as sent; R4 and R5 vocabularies differ (R4 `finished` ~ R5 `completed`)"),
    Rule("class_code", "text", "class_r4.code", "class_r5[0].coding[0].code", None,
         "raw v3 ActCode class code (R5: first coding of the first class)"),
    Rule("encounter_type", "class_label", "class_r4.code", "class_r5[0].coding[0].code",
         "coalesce(class_r4.display, class_r5[0].coding[0].display, class_r5[0].text)",
         "class code as a label (Inpatient, Outpatient-Ambulatory, Emergency, Home health, Virtual, ...);"
         " unknown codes fall back to the class display"),
    Rule("patient_ref", "reference", "subject.reference", "subject.reference", None,
         "subject reference; inside a Bundle `urn:uuid:` is resolved through fullUrl to `Patient/<id>`"),
    Rule("admission_time", "datetime", "period.start", "actualPeriod.start", None,
         "start of the encounter as a UTC timestamp; a partial date means the start of that year/month/day"),
    Rule("discharge_time", "datetime", "period.end", "actualPeriod.end", None,
         "end of the encounter as a UTC timestamp; null while the encounter is ongoing"),
    Rule("department", "text", "location[0].location.display", "location[0].location.display",
         "ref_names[location[0].location.reference]",
         "first location's display; fallback: that Location's name in the same Bundle"),
    Rule("participant_role", "text", "practitioner_r4.type[0].coding[0].code",
         "practitioner_r5.type[0].coding[0].code",
         "coalesce(practitioner_r4.type[0].text, practitioner_r5.type[0].text)",
         "participation type code (e.g. PPRF, ATND) of the first Practitioner/PractitionerRole participant"),
    Rule("practitioner_ref", "reference", "practitioner_r4.individual.reference",
         "practitioner_r5.actor.reference", None,
         "reference of the first participant that is a Practitioner or PractitionerRole (conditional"
         " references kept as sent)"),
    Rule("hospital_name", "text", "serviceProvider.display", "serviceProvider.display",
         "ref_names[serviceProvider.reference]",
         "serviceProvider display; fallback: the Organization's name in the same Bundle"),
    Rule("last_updated", "datetime", "meta.lastUpdated", "meta.lastUpdated", None,
         "meta.lastUpdated as a UTC timestamp; orders versions of one encounter (see precombine_ts)"),
)  # fmt: skip

# FHIR dateTime (R4 and R5): a year, year-month, date, or date-time with seconds and a zone.
FHIR_DATETIME_RE = (
    r"^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$"
)
FHIR_ID_RE = r"^[A-Za-z0-9\-.]{1,64}$"

# Columns a flattened row carries besides the mapped ones (written by the pipeline, documented in the README).
PIPELINE_COLUMNS: dict[str, str] = {
    "fhir_version": "R4 or R5, from the elements present (see DERIVED in streaming/mapping.py)",
    "sourcename": "full URI of the file the Encounter came from",
    "source_position": "where in that file: `line N` (NDJSON), `entry N` (Bundle) or `file`",
    "resource_json": "the Encounter's original JSON (switch off with fhir.keep_resource_json = false)",
    "precombine_ts": "ordering value: meta.lastUpdated, else the source file's modification time",
    "ingested_at": "when the micro-batch that wrote this version started (UTC)",
    "hospital_partition": "partition value derived from hospital_name (see Partitions)",
}


README_START = "<!-- mapping:start (generated by `python -m streaming.mapping`; do not edit) -->"
README_END = "<!-- mapping:end -->"


def readme_table() -> str:
    """Return the README's mapping section, generated from RULES/DERIVED so the two cannot drift apart."""
    lines = [
        "| column | R4 | R5 | fallback | meaning |",
        "|---|---|---|---|---|",
    ]
    for rule in RULES:
        fallback = f"`{rule.fallback}`" if rule.fallback else ""
        lines.append(f"| `{rule.column}` | `{rule.r4}` | `{rule.r5}` | {fallback} | {rule.meaning} |")
    lines += ["", "Helper expressions the paths use (Spark SQL, evaluated in this order):", ""]
    lines += [f"- `{name}` = `{expression}`" for name, expression in DERIVED.items()]
    lines += ["", "Columns the pipeline adds:", ""]
    lines += [f"- `{name}`: {meaning}" for name, meaning in PIPELINE_COLUMNS.items()]
    return "\n".join(lines)


def render_readme(text: str) -> str:
    """Return README text with the generated section replaced by the current mapping."""
    head, _, rest = text.partition(README_START)
    _, _, tail = rest.partition(README_END)
    return f"{head}{README_START}\n{readme_table()}\n{README_END}{tail}"


if __name__ == "__main__":
    from pathlib import Path

    readme = Path(__file__).resolve().parent.parent / "README.md"
    readme.write_text(render_readme(readme.read_text()))
