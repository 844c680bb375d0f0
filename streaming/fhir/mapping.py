"""The FHIR Encounter -> bronze column mapping, read by `flatten.py` and shown in docs/reference.md.

Where each value is in an R4 and an R5 Encounter is the shipped SQL on FHIR ViewDefinition `encounter`
(`streaming/viewdef/shipped/encounter.json`, `encounter.r5.json`), compiled by `streaming.viewdef`. What a view
cannot say is here, as data: each rule takes one of the view's columns to a bronze column through a typed step
(`kind`: FHIR dateTime -> UTC timestamp, class code -> label, reference resolved through the Bundle) and an
optional fallback; the parsed elements (`READ_FIELDS`, also the `schema_mismatch` check) and the FHIR version
detection (`DERIVED`). Adding a column is a column in both views and a line here (`make docs` refreshes
docs/reference.md).

One row per Encounter: list elements are never exploded; each column documents which element it takes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from streaming.config import ENCOUNTER_VIEW
from streaming.fhir.reasons import BAD_DATETIME, INVALID_ID, MISSING_ID
from streaming.viewdef.compiler import CompiledView, compile_view
from streaming.viewdef.shipped import definition

# A FHIR id (R4 and R5 `id` datatype): the one spelling of it; every other form (anchored, inside a reference
# pattern, in docs/reference.md) is built from this. The same text works as a Python and a Spark (Java) regex.
FHIR_ID = "[A-Za-z0-9.-]{1,64}"
# Anchored for Spark (Java regex): `\z` is the end of the text; `$` would also match before a final newline.
FHIR_ID_RE = f"^{FHIR_ID}\\z"

# The parts of an Encounter the bronze table reads, R4 and R5 together, element -> Spark type: every element the
# `encounter` views read (flatten fails on the first batch otherwise) and those the version detection reads. `class`
# stays raw JSON text because it is one Coding in R4 and a list of CodeableConcepts in R5; DERIVED parses it per
# version, and the view of that version reads it so parsed.
# An element read here whose JSON type does not fit (an object where a list belongs, a string for a Period, ...)
# quarantines the Encounter as `schema_mismatch`: Spark would otherwise null it silently. Elements read as
# `string` take any JSON value as text. Elements no rule reads are not listed, so they can never reject a row.
CODING = "struct<system: string, code: string, display: string>"
CONCEPT = f"struct<coding: array<{CODING}>, text: string>"
_REFERENCE = "struct<reference: string, type: string, display: string>"
_PERIOD = "struct<start: string, end: string>"
READ_FIELDS: dict[str, str] = {
    "resourceType": "string",
    "id": "string",
    "meta": "struct<lastUpdated: string, source: string>",
    "status": "string",
    "class": "string",
    "subject": _REFERENCE,
    "participant": f"array<struct<type: array<{CONCEPT}>, individual: {_REFERENCE}, actor: {_REFERENCE}>>",
    "period": _PERIOD,
    "actualPeriod": _PERIOD,
    "location": f"array<struct<location: {_REFERENCE}>>",
    "serviceProvider": _REFERENCE,
}
READ_SCHEMA = ", ".join(f"`{name}` {spark_type}" for name, spark_type in READ_FIELDS.items())
# The two shapes `class` may have: R4 one Coding, R5 a list of CodeableConcepts.
CLASS_R4_TYPE = CODING
CLASS_R5_TYPE = f"array<{CONCEPT}>"

# Helper columns, in order; each may use the ones before it.
DERIVED: dict[str, str] = {
    "class_r4": "CASE WHEN ltrim(class) LIKE '{%' THEN from_json(class, '" + CLASS_R4_TYPE + "') END",
    "class_r5": "CASE WHEN ltrim(class) LIKE '[%' THEN from_json(class, '" + CLASS_R5_TYPE + "') END",
    # The version's own elements decide first (R5: actualPeriod, class as a list, participant.actor; R4: period,
    # class as one Coding, participant.individual); only a resource with none of them is told by its status
    # (R5-only codes). An R4 Encounter sent with an R5 status code keeps its R4 period, class and participants.
    # Null for rows that are not an Encounter (deletes, skipped and quarantined records).
    "fhir_version": (
        "CASE WHEN resourceType IS DISTINCT FROM 'Encounter' THEN NULL"
        " WHEN actualPeriod IS NOT NULL OR class_r5 IS NOT NULL OR exists(participant, p -> p.actor IS NOT NULL)"
        " THEN 'R5'"
        " WHEN period IS NOT NULL OR class_r4 IS NOT NULL OR exists(participant, p -> p.individual IS NOT NULL)"
        " THEN 'R4'"
        " WHEN status IN ('on-hold', 'discharged', 'completed', 'discontinued') THEN 'R5' ELSE 'R4' END"
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


# How a rule's view value is normalised: text as is | reference (resolved via the Bundle) | datetime (FHIR
# dateTime -> UTC) | class_label (class code -> CLASS_LABELS).
RuleKind = Literal["text", "reference", "datetime", "class_label"]
# The struct column holding the encounter view's row in flatten (fallbacks read it).
VIEW_ROW = "encounter"


@dataclass(frozen=True)
class Rule:
    """How one bronze column comes from the `encounter` view's row."""

    column: str
    kind: RuleKind
    source: str  # the view's column
    fallback: str | None  # Spark SQL over the view's row (`encounter.<column>`) and the Bundle's `ref_names`,
    # used when the normalised value is null
    meaning: str


_LABELS = ", ".join(f"`{code}` {label}" for code, label in CLASS_LABELS.items())
_TIME = (
    "any offset is converted, a partial date (`2013`, `2013-03`, `2013-03-11`) is the start of that period in UTC;"
    f" a value that is not a FHIR dateTime (a bad date, a time without a zone) quarantines the row (`{BAD_DATETIME}`)"
)

RULES: tuple[Rule, ...] = (
    Rule("encounter_id", "text", "id", None,
         f"Encounter.id, the record key; missing is `{MISSING_ID}`, not a JSON string or not a FHIR id"
         f" (`{FHIR_ID}`) is `{INVALID_ID}` (both quarantined); a Bundle DELETE's key comes from its"
         " request.url"),
    Rule("status", "text", "status", None,
         "status code as sent, not translated: R4 and R5 vocabularies differ (R4 `finished` ~ R5 `completed`;"
         " R5 adds `on-hold`, `discharged`, `discontinued`)"),
    Rule("class_code", "text", "class_code", None,
         "raw v3 ActCode class code (R5: first coding of the first class)"),
    Rule("encounter_type", "class_label", "class_code", f"{VIEW_ROW}.class_display",
         f"class code as a label ({_LABELS}); an unknown code falls back to the class display (R5: that"
         " coding's display, else the concept's text)"),
    Rule("patient_ref", "reference", "patient_ref", None,
         "subject reference as sent; inside a Bundle a `urn:uuid:` (any fullUrl) reference is resolved to"
         " `Patient/<id>`"),
    Rule("admission_time", "datetime", "admission_time", None,
         f"start of the encounter as a UTC timestamp: {_TIME}"),
    Rule("discharge_time", "datetime", "discharge_time", None,
         "end of the encounter as a UTC timestamp, parsed like admission_time; null while the encounter is"
         " ongoing"),
    Rule("department", "text", "department", f"ref_names[{VIEW_ROW}.department_reference]",
         "first location's display; fallback: that Location's name in the same Bundle"),
    Rule("participant_role", "text", "participant_role", None,
         "participation type code (e.g. PPRF, ATND) of the first participant that is a Practitioner or"
         " PractitionerRole: its reference names one (getReferenceKey: relative, absolute, versioned or a"
         " Bundle fullUrl; or conditional, `Practitioner?...`) or its Reference.type does (a Patient or"
         " RelatedPerson before it is skipped); else that type's text"),
    Rule("practitioner_ref", "reference", "practitioner_ref", None,
         "reference of that same participant; a Bundle fullUrl is resolved to `Practitioner/<id>`, absolute and"
         " conditional references are kept as sent; null when only Reference.type names one"),
    Rule("hospital_name", "text", "hospital_name", f"ref_names[{VIEW_ROW}.hospital_reference]",
         "serviceProvider display, exact text (also `/`, empty, non-ASCII, any length); fallback: the"
         " Organization's name in the same Bundle"),
    Rule("last_updated", "datetime", "last_updated", None,
         "meta.lastUpdated as a UTC timestamp, parsed like admission_time; orders versions of one encounter"
         " (see precombine_ts)"),
)  # fmt: skip

# FHIR dateTime (R4 and R5): a year (0001-9999), year-month, date, or date-time with seconds and a zone.
FHIR_DATETIME_RE = (
    r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$"
)

# Columns a flattened row carries besides the mapped ones (written by the pipeline, documented in docs/reference.md).
PIPELINE_COLUMNS: dict[str, str] = {
    "fhir_version": (
        "R4 or R5: the version's own elements decide, else an R5-only status code (see `fhir_version` above);"
        " R4 and R5 fill the same columns"
    ),
    "sourcename": "full URI of the file the Encounter came from",
    "source_position": "where in that file: `line N` (NDJSON), `entry N` (Bundle) or `file`",
    "resource_json": (
        "the Encounter's JSON, lossless: the original text (a Bundle entry's resource re-serialised, same"
        " content); null when fhir.keep_resource_json = false"
    ),
    "precombine_ts": (
        "Hudi's ordering value (see Ordering): the version's event time (meta.lastUpdated, else its Bundle entry's"
        " response.lastModified, else its Bundle's meta.lastUpdated or timestamp); without one, the file's"
        " modification time moved below every event time (1970-01-01 plus its epoch milliseconds as"
        " microseconds)"
    ),
    "ingested_at": "when the micro-batch that wrote this version started (UTC)",
    "source_modified": "modification (landing) time of the file this version came from",
    "is_deleted": (
        "true for a tombstone: a Bundle DELETE removed the encounter; only encounter_id, precombine_ts and the"
        " source columns are set, and it lives in the partition `__deleted__`. Filter `NOT is_deleted`"
    ),
    "hospital_partition": (
        "the Hudi partition, derived from hospital_name so that it is always one folder directly inside the table:"
        " `__unknown__` when the name is missing, empty or blank; the name itself when it is printable ASCII"
        " without leading or trailing space, not `.` or `..`, not starting with `__`, and at most 100 characters"
        " once Hudi URL-encodes"
        " it (each of ``\"#%'*/:=?[\\]^{`` counts 3); otherwise its first 40 characters with every character"
        " outside printable ASCII replaced by `_`, then `~` and the first 16 hex digits of the SHA-256 of its"
        " UTF-8 bytes"
    ),
    "source_system": (
        "the system the encounter came from, part of the record key when `key_scope` names one: the resource's"
        " meta.source (else its Bundle's; a DELETE takes its Bundle's), or the first folder under the landing"
        ' prefix; empty when it has none; null with the default `key_scope = "id"`'
    ),
}


def view_columns(fhir_version: str) -> Iterator[tuple[str, str, str | None]]:
    """The `encounter` view's columns for `fhir_version`: name, FHIRPath, and the `forEachOrNull` of the nested
    select it is read in (None at the top)."""
    view: Mapping[str, Any] = definition(ENCOUNTER_VIEW, fhir_version)
    for select in view["select"]:
        for column in select.get("column", []):
            yield column["name"], column["path"], select.get("forEachOrNull")


def view_path(column: str, fhir_version: str) -> str:
    """Where the `encounter` view's top-level `column` is in an Encounter of `fhir_version`, for messages."""
    paths = {name: path for name, path, nested in view_columns(fhir_version) if nested is None}
    return f"Encounter.{paths[column]}"


@functools.cache
def encounter_view(fhir_version: str) -> CompiledView:
    """The `encounter` view compiled for `fhir_version` over flatten's columns: each element read (READ_FIELDS) is
    a column of its own, `class` the version's parse of it (DERIVED)."""
    elements = {name: f"`{name}`" for name in READ_FIELDS} | {"class": f"class_{fhir_version.lower()}"}
    return compile_view(
        definition(ENCOUNTER_VIEW, fhir_version),
        fhir_version=fhir_version,
        resource_column=f"_encounter_{fhir_version.lower()}",  # names its bindings apart from the other version's
        elements=elements,
    )


def readme_table() -> str:
    """Return the reference's mapping section, generated from RULES, the views and DERIVED so they cannot drift."""
    paths: dict[str, dict[str, str]] = {"R4": {}, "R5": {}}
    nested: dict[str, dict[str, str]] = {"R4": {}, "R5": {}}
    for version, found in paths.items():
        for name, path, over in view_columns(version):
            label = over.split(".")[0] if over else None
            found[name] = f"`{path}`" + (f" in `{label}`" if label else "")
            if over and label:
                nested[version][label] = over
    lines = [
        "| column | R4 | R5 | typed step | fallback | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for rule in RULES:
        r4, r5 = (paths[v][rule.source].replace("|", "\\|") for v in ("R4", "R5"))
        fallback = f"`{rule.fallback}`" if rule.fallback else ""
        lines.append(f"| `{rule.column}` | {r4} | {r5} | {rule.kind} | {fallback} | {rule.meaning} |")
    lines += ["", "Nested selects (`forEachOrNull`) the paths above are read in:", ""]
    for label, over in nested["R4"].items():
        r4, r5 = over, nested["R5"][label]
        lines.append(f"- `{label}`: R4 `{r4}`; R5 `{r5}`")
    lines += ["", "Helper expressions (Spark SQL, evaluated in this order):", ""]
    lines += [f"- `{name}` = `{expression}`" for name, expression in DERIVED.items()]
    lines += ["", "Columns the pipeline adds:", ""]
    lines += [f"- `{name}`: {meaning}" for name, meaning in PIPELINE_COLUMNS.items()]
    return "\n".join(lines)
