"""A query result (Arrow) as text: an aligned table for people, CSV and JSON for scripts; no JVM, no DuckDB."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import unicodedata
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

FORMATS = ("table", "csv", "json")
_CELL_CHARS = 100  # `table` output cuts longer cells; csv and json keep them whole


def render(table: pa.Table, fmt: str) -> str:
    """The result as text: `table` (aligned, for people), `csv`, or `json` (an array of row objects)."""
    names = table.column_names
    columns = [column.to_pylist() for column in table.columns]
    rows = [[column[i] for column in columns] for i in range(table.num_rows)]
    if fmt == "json":
        objects = [json.dumps(dict(zip(names, map(plain, row), strict=True)), ensure_ascii=False) for row in rows]
        return "[\n" + ",\n".join(objects) + "\n]" if objects else "[]"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([[_text(value) for value in row] for row in rows])
        return out.getvalue()
    if fmt == "table":
        numeric = [_is_numeric(field.type) for field in table.schema]
        return _aligned(names, [[_cell(value) for value in row] for row in rows], numeric)
    raise ValueError(f"unknown output format {fmt!r} (one of {', '.join(FORMATS)})")


def plain(value: Any) -> Any:
    """A result value as JSON: times as ISO 8601 text, decimals as numbers, NaN/inf as null, bytes as base64."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"PT{value.total_seconds():g}S"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return {str(k): plain(v) for k, v in value}  # an Arrow map reads as a list of (key, value) pairs
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)  # intervals and other rare types


def _text(value: Any) -> str:
    """A value as one CSV field: null is empty, nested values are JSON."""
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _cell(value: Any) -> str:
    """A value as one line of a text table: NULL spelled out, line breaks escaped, long text cut."""
    if value is None:
        return "NULL"
    text = _text(value).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"


def _is_numeric(arrow_type: pa.DataType) -> bool:
    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type)


def _width(text: str) -> int:
    """Columns a string takes in a terminal: wide (CJK) characters 2, combining marks 0."""
    if text.isascii():
        return len(text)
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text
    )


def _aligned(names: list[str], rows: list[list[str]], numeric: list[bool]) -> str:
    widths = [max([_width(name), *(_width(row[i]) for row in rows)]) for i, name in enumerate(names)]

    def line(cells: list[str]) -> str:
        padded = [
            " " * (w - _width(c)) + c if right else c + " " * (w - _width(c))
            for c, w, right in zip(cells, widths, numeric, strict=True)
        ]
        return " | ".join(padded).rstrip()

    out = [line(names), "-+-".join("-" * w for w in widths)]
    out += [line(row) for row in rows]
    out.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(out) + "\n"
