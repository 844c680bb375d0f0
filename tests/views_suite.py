"""Where the SQL on FHIR v2 conformance suite is: beside the repo (../shared, never copied in), or BRONZE_SOF_SUITE."""

from __future__ import annotations

import os
from pathlib import Path

CANDIDATES = [
    os.environ.get("BRONZE_SOF_SUITE", ""),
    str(Path(__file__).resolve().parents[2] / "shared" / "sql-on-fhir-v2"),
    "/work/shared/sql-on-fhir-v2",
]
SUITE = next((Path(c) for c in CANDIDATES if c and (Path(c) / "tests").is_dir()), None)
