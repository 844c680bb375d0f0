"""Where the shared data is: ../shared beside the repo, /work/shared, or the folder BRONZE_SHARED names.

Tests and benchmarks read the samples and the SQL on FHIR suite in place (never copied into the repo) through
`SYNTHEA`, `BULK` and `SOF_SUITE`; one list of places for all three, so a clone elsewhere finds them all or fails
on all.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOTS = [
    os.environ.get("BRONZE_SHARED", ""),
    str(Path(__file__).resolve().parents[2] / "shared"),
    "/work/shared",
]


def find(relative: str, marker: str) -> Path:
    """The first root holding `relative/marker`; else the path beside the repo, so a test fails naming it."""
    for root in filter(None, ROOTS):
        if (Path(root) / relative / marker).exists():
            return Path(root) / relative
    return Path(ROOTS[1]) / relative


def missing(folder: Path) -> str:
    """The one line a test or benchmark fails with when shared data is not where it looks."""
    return f"shared test data {folder.name} not found under {[r for r in ROOTS if r]}; set BRONZE_SHARED"


SYNTHEA = find("fhir-samples/synthea", "encounters.ndjson")
BULK = find("fhir-samples/bulk-10-patients", "Patient.000.ndjson")
SOF_SUITE = find("sql-on-fhir-v2", "tests")
