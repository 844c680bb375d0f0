"""A query result (Arrow batches) as text: an aligned table for people, CSV, JSON and NDJSON for scripts.

CSV, JSON and NDJSON are written batch by batch as the rows come, so memory follows the batch, not the result;
the aligned table needs every row it shows before its first line, so it shows at most a limit (the CLI's default
`TABLE_ROWS`). No JVM, no DuckDB.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TextIO

import pyarrow as pa

FORMATS = ("table", "csv", "json", "ndjson")
TABLE_ROWS = 1000  # rows `table` shows unless told otherwise: it holds them all to align the columns
_CELL_CHARS = 100  # `table` output cuts longer cells; csv and json keep them whole


@dataclass(frozen=True)
class Written:
    """How much of a result was written: `rows` shown, of `total` (None when reading stopped at the limit)."""

    rows: int
    total: int | None

    @property
    def hidden(self) -> int:
        """Rows of the result not shown (0 when unknown)."""
        return 0 if self.total is None else self.total - self.rows


def write(
    batches: Iterable[pa.RecordBatch], schema: pa.Schema, fmt: str, out: TextIO, *, limit: int = 0, count: bool = False
) -> Written:
    """Write the rows to `out` in `fmt`, at most `limit` of them (0: all).

    Past the limit, reading stops, unless `count`: then the remaining rows are read (not converted) to count them.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r} (one of {', '.join(FORMATS)})")
    shown = _Limited(iter(batches), limit)
    _WRITERS[fmt](shown, schema, out)
    rows = shown.rows
    if not shown.stopped:
        return Written(rows, rows)
    if not count:
        return Written(rows, None)
    return Written(rows, rows + shown.rest + sum(batch.num_rows for batch in shown.remaining))


def _write_table(shown: _Limited, schema: pa.Schema, out: TextIO) -> None:
    numeric = [_is_numeric(field.type) for field in schema]
    cells = [[_cell(value) for value in row] for batch in shown for row in _rows(batch)]
    out.write(_aligned(schema.names, cells, numeric))


def _write_csv(shown: _Limited, schema: pa.Schema, out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(schema.names)
    for batch in shown:
        writer.writerows([_text(value) for value in row] for row in _rows(batch))


def _write_json(shown: _Limited, schema: pa.Schema, out: TextIO) -> None:
    """An array of row objects, written row by row as the batches come."""
    first = True
    for line in _json_lines(shown, schema.names):
        out.write(("[\n" if first else ",\n") + line)
        first = False
    out.write("[]\n" if first else "\n]\n")


def _write_ndjson(shown: _Limited, schema: pa.Schema, out: TextIO) -> None:
    for line in _json_lines(shown, schema.names):
        out.write(line + "\n")


def _json_lines(shown: _Limited, names: list[str]) -> Iterator[str]:
    for batch in shown:
        for row in _rows(batch):
            yield json.dumps(dict(zip(names, map(plain, row), strict=True)), ensure_ascii=False)


# One writer per name in FORMATS.
_WRITERS: dict[str, Callable[[_Limited, pa.Schema, TextIO], None]] = {
    "table": _write_table,
    "csv": _write_csv,
    "json": _write_json,
    "ndjson": _write_ndjson,
}


def render(table: pa.Table, fmt: str) -> str:
    """The whole result as text (what `write` writes): `table`, `csv`, `json` (an array of row objects), `ndjson`."""
    out = io.StringIO()
    write(table.to_batches(), table.schema, fmt, out)
    return out.getvalue()


class _Limited:
    """The batches up to `limit` rows (0: all), the last one cut; then what was left unread."""

    def __init__(self, batches: Iterator[pa.RecordBatch], limit: int) -> None:
        self.remaining, self.limit = batches, limit
        self.rows = 0
        self.rest = 0  # rows of the cut batch past the limit
        self.stopped = False  # the limit was reached with rows left

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for batch in self.remaining:
            if self.limit and self.rows + batch.num_rows > self.limit:
                keep = self.limit - self.rows
                self.rows, self.rest, self.stopped = self.limit, batch.num_rows - keep, True
                if keep:
                    yield batch.slice(0, keep)
                return
            self.rows += batch.num_rows
            yield batch
            if self.limit and self.rows == self.limit:
                self.stopped = self._more()
                return

    def _more(self) -> bool:
        """Whether any row follows (reads one more batch, kept for the count)."""
        for batch in self.remaining:
            if batch.num_rows:
                self.rest = batch.num_rows
                return True
        return False


def _rows(batch: pa.RecordBatch) -> Iterator[tuple[Any, ...]]:
    """A batch's rows as Python values, converted one batch at a time."""
    return zip(*(column.to_pylist() for column in batch.columns), strict=True)


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
    return bool(pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type))


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
