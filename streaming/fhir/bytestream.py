"""One landed file's bytes -> its JSON values, each with its original text and position; no FHIR rules here.

This is the byte side of reading a file: gzip (detected by magic bytes, not by name), a UTF-8 BOM, UTF-8, the size
limits (the file, also after decompression, and one line or document), NDJSON vs one JSON document, and JSON
syntax. NDJSON is read line by line, so a file of any size needs only one line of memory. What the values mean
(Bundles, references, deletes) is `parse.py`'s business.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import IO, Any

from streaming.config import FhirConfig
from streaming.fhir.reasons import (
    EMPTY_FILE,
    FILE_TOO_LARGE,
    INVALID_UTF8,
    MALFORMED_JSON,
    RECORD_TOO_LARGE,
    TOO_DEEP,
    TRUNCATED,
)

UTF8_BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Value:
    """One parsed JSON value: a line of NDJSON (`line N`) or the whole file (`file`), with its original text."""

    position: str
    value: Any
    text: str


@dataclass(frozen=True)
class Rejected:
    """Input that gives no JSON value: a reason code, a message (never the content) and the raw text or bytes."""

    position: str
    reason: str
    message: str
    raw: str | bytes | None = None


def read_values(raw: IO[bytes], limits: FhirConfig, size: int | None = None) -> Iterator[Value | Rejected]:
    """Yield the JSON values of one file lazily, while it is read; never raises for bad content (that is Rejected).

    When gzip content turns out to be damaged or larger than `max_file_bytes` after decompression, the values read
    before that point stay and one `file` Rejected says why reading stopped.
    """
    if size is not None and size > limits.max_file_bytes:
        yield Rejected("file", FILE_TOO_LARGE, f"file is {size} bytes, limit {limits.max_file_bytes}")
        return
    try:
        yield from _Reader(limits).values(raw)
    except _TooLarge:
        yield Rejected("file", FILE_TOO_LARGE, f"content exceeds {limits.max_file_bytes} bytes after decompression")
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        yield Rejected("file", TRUNCATED, f"compressed stream is damaged: {type(exc).__name__}")


class _TooLarge(Exception):
    pass


class _LimitedReader(io.RawIOBase):
    """Raise once more than `limit` bytes have been read: a gzip bomb must not fill memory or disk."""

    def __init__(self, inner: IO[bytes] | gzip.GzipFile, limit: int) -> None:
        # read1 returns what one underlying read gives: a GzipFile's read(n) would loop for n bytes, and when the
        # stream then turns out to be truncated the bytes it already decompressed would be lost with the error.
        self._read = getattr(inner, "read1", inner.read)
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # Exactly `limit` bytes get through, so the records that lie wholly within the limit are still produced;
        # a read past them raises if there is more.
        if self._left <= 0:
            if self._read(1):
                raise _TooLarge
            return 0
        data = self._read(min(len(buffer), self._left))
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)


def _object_shaped(line: bytes) -> bool:
    """Cheap test: a line that starts with `{` and ends with `}` looks like one whole JSON object."""
    text = line.strip()
    return text.startswith(b"{") and text.endswith(b"}")


def _is_fhir_line(line: bytes | str) -> bool:
    """True if `line` is one whole JSON object with a resourceType: a line of NDJSON, not part of a document."""
    text = line.strip()
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    if text.startswith(UTF8_BOM):
        text = text[len(UTF8_BOM) :]
    if not _object_shaped(text):
        return False
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and isinstance(value.get("resourceType"), str)


class _Reader:
    """Decide a file's shape and turn it into Values and Rejected, within one set of limits."""

    def __init__(self, limits: FhirConfig) -> None:
        self.limits = limits

    def values(self, raw: IO[bytes]) -> Iterator[Value | Rejected]:
        buffered: io.BufferedReader[Any] = io.BufferedReader(_LimitedReader(raw, self.limits.max_file_bytes), 1 << 16)
        if buffered.peek(2)[:2] == GZIP_MAGIC:
            decompressed = gzip.GzipFile(fileobj=buffered, mode="rb")
            buffered = io.BufferedReader(_LimitedReader(decompressed, self.limits.max_file_bytes), 1 << 16)
        stream = _Lines(buffered, self.limits.max_document_bytes)

        first = stream.next_nonblank()
        if first is None:
            yield Rejected("file", EMPTY_FILE, "file holds no JSON")
            return
        line_no, line = first
        if line.startswith(UTF8_BOM):
            line = line[len(UTF8_BOM) :]
        head = [(line_no, line)]
        # A first line that is a whole object means NDJSON (a compact single resource is one-line NDJSON); a first
        # line that is only `{` or `[` opens one pretty-printed document. Any other first line is either a broken
        # first line of NDJSON or the start of a document: the second line tells (a whole FHIR object -> NDJSON),
        # so a large NDJSON file with a bad first line is still read line by line.
        if _object_shaped(line):
            yield from self._ndjson(stream, head)
            return
        if line.strip() not in (b"{", b"["):
            second = stream.next_nonblank()
            if second is not None:
                head.append(second)
                if second[1] is not _Lines.OVERSIZED and _is_fhir_line(second[1]):
                    yield from self._ndjson(stream, head)
                    return
        yield from self._document(stream, head)

    def _ndjson(self, stream: _Lines, head: Iterable[tuple[int, bytes]]) -> Iterator[Value | Rejected]:
        for line_no, line in _chain(head, stream):
            position = f"line {line_no}"
            if line is _Lines.OVERSIZED:
                yield Rejected(position, RECORD_TOO_LARGE, f"line longer than {self.limits.max_document_bytes} bytes")
            else:
                yield from self._from_bytes(line, position)

    def _document(self, stream: _Lines, head: list[tuple[int, bytes]]) -> Iterator[Value | Rejected]:
        too_large = f"document larger than {self.limits.max_document_bytes} bytes"
        if any(line is _Lines.OVERSIZED for _, line in head):
            yield Rejected("file", RECORD_TOO_LARGE, too_large)
            return
        # Blank lines between the head lines were skipped; put them back so line numbers stay those of the file.
        parts = [head[0][1]]
        for (before, _), (line_no, line) in pairwise(head):
            parts += [b"\n" * (line_no - before - 1), line]
        data = b"".join(parts)
        rest = stream.read_rest(self.limits.max_document_bytes - len(data))
        if rest is None:
            yield Rejected("file", RECORD_TOO_LARGE, too_large)
            return
        data += rest
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Rejected("file", INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}", data)
            return
        try:
            value = json.loads(text)
        except RecursionError:
            yield Rejected("file", TOO_DEEP, f"nesting deeper than {self.limits.max_depth}", text)
            return
        except ValueError as exc:
            # NDJSON whose first lines are broken: keep the good lines, quarantine the bad ones.
            lines = text.split("\n")
            if len(lines) > 1 and any(_is_fhir_line(candidate) for candidate in lines[1:]):
                for offset, candidate in enumerate(lines):
                    if candidate.strip() and candidate.strip() != "\ufeff":
                        yield self._from_text(candidate, f"line {head[0][0] + offset}")
                return
            yield self._json_error("file", exc, text)
            return
        yield Value("file", value, text)

    def _from_bytes(self, data: bytes, position: str) -> Iterator[Value | Rejected]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Rejected(position, INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}", data)
            return
        yield self._from_text(text, position)

    def _from_text(self, text: str, position: str) -> Value | Rejected:
        text = text.strip().lstrip("\ufeff")
        try:
            return Value(position, json.loads(text), text)
        except RecursionError:
            return Rejected(position, TOO_DEEP, f"nesting deeper than {self.limits.max_depth}", text)
        except ValueError as exc:
            return self._json_error(position, exc, text)

    def _json_error(self, position: str, exc: ValueError, text: str) -> Rejected:
        """Reject text that json.loads refused: truncated if the JSON ends early, else malformed."""
        if not isinstance(exc, json.JSONDecodeError):
            # int() refuses numbers over sys.get_int_max_str_digits() digits: valid JSON, but not a plausible one.
            return Rejected(position, MALFORMED_JSON, "number with too many digits", text)
        # "Unterminated string" means the text ended inside a string (a raw line break would be a control
        # character error instead): the usual way a cut-off line or file ends.
        ends_early = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        where = f"line {exc.lineno} column {exc.colno}" if position == "file" else f"column {exc.colno}"
        return Rejected(position, TRUNCATED if ends_early else MALFORMED_JSON, f"{exc.msg} at {where}", text)


def _chain(head: Iterable[tuple[int, bytes]], stream: _Lines) -> Iterator[tuple[int, bytes]]:
    yield from head
    while (nxt := stream.next_nonblank()) is not None:
        yield nxt


class _Lines:
    """Line reader with a bound on line length; an over-long line is skipped and reported as OVERSIZED."""

    OVERSIZED = b"\x00<oversized>"

    def __init__(self, stream: io.BufferedReader[Any], max_line: int) -> None:
        self._stream = stream
        self._max = max_line
        self._line_no = 0

    def next_nonblank(self) -> tuple[int, bytes] | None:
        while True:
            line = self._stream.readline(self._max + 1)
            if not line:
                return None
            self._line_no += 1
            if len(line) > self._max and not line.endswith(b"\n"):
                while chunk := self._stream.readline(1 << 20):  # drain the rest of the over-long line
                    if chunk.endswith(b"\n"):
                        break
                return self._line_no, self.OVERSIZED
            if line.strip() and line.strip() != UTF8_BOM:
                return self._line_no, line

    def read_rest(self, limit: int) -> bytes | None:
        """Read to the end, or return None when more than `limit` bytes remain."""
        data = self._stream.read(max(limit, 0) + 1)
        return None if len(data) > limit else data
