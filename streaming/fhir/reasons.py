"""Every reason code a quarantine row can carry, one table: the code imports it, the reference table is made of it.

`make docs` refreshes the docs/reference.md section; a test fails when the two differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Where a reject is decided: while an executor reads the file, or when flatten checks the Encounter's elements.
Stage = Literal["read", "flatten"]
STAGES: dict[Stage, str] = {
    "read": "while an executor reads the file (`bytestream.py`, `parse.py`, `records.py`), before any Spark SQL",
    "flatten": "when `flatten.py` checks the Encounter's elements (Spark SQL)",
}

EMPTY_FILE = "empty_file"
TRUNCATED = "truncated"
MALFORMED_JSON = "malformed_json"
INVALID_UTF8 = "invalid_utf8"
NOT_FHIR = "not_a_fhir_resource"
TOO_DEEP = "nesting_too_deep"
FILE_TOO_LARGE = "file_too_large"
RECORD_TOO_LARGE = "record_too_large"
BAD_BUNDLE_ENTRY = "bad_bundle_entry"
UNREADABLE = "unreadable_file"
MISSING_ID = "missing_id"
INVALID_ID = "invalid_id"
BAD_DATETIME = "bad_datetime"
FUTURE_DATETIME = "future_datetime"
SCHEMA_MISMATCH = "schema_mismatch"


@dataclass(frozen=True)
class Reason:
    """One reason code: where it is raised and what it means (a row of the reference table)."""

    code: str
    raised_in: Stage
    meaning: str


REASONS: tuple[Reason, ...] = (
    Reason(EMPTY_FILE, "read", "the file holds no JSON"),
    Reason(TRUNCATED, "read", "JSON (or gzip) ends early"),
    Reason(MALFORMED_JSON, "read", "not parseable as JSON"),
    Reason(INVALID_UTF8, "read", "bytes that are not UTF-8"),
    Reason(NOT_FHIR, "read", "a JSON value without a `resourceType`"),
    Reason(TOO_DEEP, "read", "deeper than `fhir.max_depth`"),
    Reason(FILE_TOO_LARGE, "read", "over `fhir.max_file_bytes` (compressed or after decompression)"),
    Reason(RECORD_TOO_LARGE, "read",
           "one line or document over `fhir.max_document_bytes` (64 MiB), or one the worker ran out of memory"
           " parsing: a retry would fail the same way, so it is quarantined instead of stopping the stream"),
    Reason(BAD_BUNDLE_ENTRY, "read",
           "a Bundle entry without a resource, or a DELETE of an Encounter without a literal id"),
    Reason(UNREADABLE, "read",
           "listed, then gone before it was read (a file that is there but cannot be read fails the batch"
           ' instead, see "Exactly once")'),
    Reason(MISSING_ID, "flatten", "an Encounter without `id`"),
    Reason(INVALID_ID, "flatten", "`id` is not a JSON string or not a FHIR id (also for a DELETE's id)"),
    Reason(BAD_DATETIME, "flatten", "a dateTime that is not FHIR (the message names the field)"),
    Reason(FUTURE_DATETIME, "flatten",
           "the version's event time (its lastUpdated, else its Bundle's times) is more than"
           " `fhir.future_tolerance_hours` (24) after it was read: a wrong clock would otherwise pin the encounter"
           " and every real update until then would lose"),
    Reason(SCHEMA_MISMATCH, "flatten",
           "an element the mapping reads has the wrong JSON type (the message names it), or the resource is not"
           " an Encounter"),
)  # fmt: skip

CODES: frozenset[str] = frozenset(reason.code for reason in REASONS)


def readme_table() -> str:
    """Return the reference's reason-code section, generated from REASONS so the two cannot drift apart."""
    lines = ["| reason | stage | meaning |", "|---|---|---|"]
    lines += [f"| `{r.code}` | `{r.raised_in}` | {r.meaning} |" for r in REASONS]
    lines += ["", *(f"- `{stage}`: {where}" for stage, where in STAGES.items())]
    return "\n".join(lines)
