"""Two bronze tables compared row by row on their business columns (a killed run against an uninterrupted one)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streaming.bronze.flatten import BRONZE_COLUMNS

from .tables import read_rows, tables
from .text import few

BUSINESS_COLUMNS = tuple(c for c in BRONZE_COLUMNS if c != "ingested_at")  # when a batch ran is not business


def business_rows(spark: Any, warehouse: Path) -> dict[str, tuple[Any, ...]]:
    """encounter id -> the row's business columns (no _hoodie_* meta columns, no ingested_at)."""
    rows = read_rows(spark, tables(warehouse)["bronze"], BUSINESS_COLUMNS)
    return {r["encounter_id"]: tuple(r[c] for c in BUSINESS_COLUMNS) for r in rows}


def compare_business_rows(got: Mapping[str, tuple[Any, ...]], want: Mapping[str, tuple[Any, ...]]) -> list[str]:
    """Differences between two bronze tables, by id and column name (never values)."""
    problems = []
    if missing := want.keys() - got.keys():
        problems.append(f"{len(missing)} ids missing: {few(missing)}")
    if extra := got.keys() - want.keys():
        problems.append(f"{len(extra)} ids extra: {few(extra)}")
    differ: dict[str, list[str]] = {}
    for key in want.keys() & got.keys():
        cols = [c for c, a, b in zip(BUSINESS_COLUMNS, got[key], want[key], strict=True) if a != b]
        if cols:
            differ[key] = cols
    if differ:
        problems.append(f"{len(differ)} rows differ: {few(differ.items())}")
    return problems
