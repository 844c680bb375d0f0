"""Split one landed file into FHIR resources, whatever its shape, without Spark.

A landing prefix mixes single resources (compact or pretty, with or without a BOM), Bundles, NDJSON and gzip of
each. Spark's JSON reader handles one shape per read (`multiLine=true` keeps only the first NDJSON line, line mode
cannot read a pretty file), so each file is read here as a byte stream and turned into records:

- `resource`: an Encounter, with its original JSON text and the Bundle context needed to resolve references;
- `delete`: a Bundle entry asking to delete an Encounter;
- `skipped`: a well-formed resource of another type (counted, not kept);
- `quarantine`: anything that cannot become a row, with a reason code and a bounded slice of the raw text.

NDJSON is read line by line, so a file of any size needs only one line of memory. Flattening the Encounter into
columns is not done here: that is Spark SQL, in `flatten.py`.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from streaming.config import FhirConfig

UTF8_BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"

# Reason codes of the quarantine table; the README lists them.
EMPTY_FILE = "empty_file"
FILE_TOO_LARGE = "file_too_large"
RECORD_TOO_LARGE = "record_too_large"
TRUNCATED = "truncated"
MALFORMED_JSON = "malformed_json"
INVALID_UTF8 = "invalid_utf8"
NOT_FHIR = "not_a_fhir_resource"
TOO_DEEP = "nesting_too_deep"
BAD_BUNDLE_ENTRY = "bad_bundle_entry"
UNREADABLE = "unreadable_file"

_ENCOUNTER_URL = re.compile(r"^(?:.*/)?Encounter/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?$")


@dataclass(frozen=True)
class Record:
    """One output of splitting a file; which fields are set depends on `kind`."""

    kind: str  # resource | delete | skipped | quarantine
    position: str  # "line 3", "entry 5", "line 2 entry 4" or "file"
    resource_type: str | None = None
    resource_id: str | None = None
    resource_json: str | None = None
    ref_map: Mapping[str, str] = field(default_factory=dict)  # reference -> resolved "Type/id" (Bundle only)
    ref_names: Mapping[str, str] = field(default_factory=dict)  # reference -> name of the Organization/Location
    reason: str | None = None
    message: str | None = None
    raw_slice: str | None = None


class _TooLarge(Exception):
    pass


class _LimitedReader(io.RawIOBase):
    """Raise once more than `limit` bytes have been read: a gzip bomb must not fill memory or disk."""

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        self._inner = inner
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        self._left -= len(data)
        if self._left < 0:
            raise _TooLarge
        buffer[: len(data)] = data
        return len(data)


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Return True if `value` nests objects/arrays deeper than `limit` (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values() if isinstance(child, dict | list))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, dict | list))
    return False


def _references(value: Any) -> Iterator[str]:
    """Yield every `reference` string inside a resource."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str):
                yield ref
            stack.extend(v for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, dict | list))


@dataclass
class _BundleIndex:
    """What a Bundle's entries say about each other: fullUrl -> Type/id, and names of organisations/locations."""

    targets: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: list[Any]) -> _BundleIndex:
        index = cls()
        for entry in entries:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                continue
            rtype, rid = resource.get("resourceType"), resource.get("id")
            if not (isinstance(rtype, str) and isinstance(rid, str)):
                continue
            local = f"{rtype}/{rid}"
            keys = [local]
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str):
                index.targets[full_url] = local
                keys.append(full_url)
            name = resource.get("name")
            if rtype in ("Organization", "Location") and isinstance(name, str):
                for key in keys:
                    index.names[key] = name
        return index

    def context(self, resource: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        ref_map: dict[str, str] = {}
        ref_names: dict[str, str] = {}
        for ref in _references(resource):
            if ref in self.targets:
                ref_map[ref] = self.targets[ref]
            name = self.names.get(ref) or self.names.get(self.targets.get(ref, ""))
            if name is not None:
                ref_names[ref] = name
        return ref_map, ref_names


class FileSplitter:
    """Turn a file's bytes into Records; one instance per set of limits, reused across files."""

    def __init__(self, limits: FhirConfig) -> None:
        self.limits = limits

    # -- entry point -------------------------------------------------------------------------------------------
    def split(self, raw: IO[bytes], size: int | None = None) -> Iterator[Record]:
        """Yield the records of one file; never raises for bad content (that becomes a quarantine record)."""
        if size is not None and size > self.limits.max_file_bytes:
            yield self._quarantine("file", FILE_TOO_LARGE, f"file is {size} bytes, limit {self.limits.max_file_bytes}")
            return
        try:
            yield from self._split(raw)
        except _TooLarge:
            yield self._quarantine(
                "file",
                FILE_TOO_LARGE,
                f"content exceeds {self.limits.max_file_bytes} bytes after decompression",
            )
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            yield self._quarantine("file", TRUNCATED, f"compressed stream is damaged: {type(exc).__name__}")

    def _split(self, raw: IO[bytes]) -> Iterator[Record]:
        buffered = io.BufferedReader(_LimitedReader(raw, self.limits.max_file_bytes), 1 << 16)
        if buffered.peek(2)[:2] == GZIP_MAGIC:
            decompressed = gzip.GzipFile(fileobj=buffered, mode="rb")
            buffered = io.BufferedReader(_LimitedReader(decompressed, self.limits.max_file_bytes), 1 << 16)
        stream = _Lines(buffered, self.limits.max_document_bytes)

        first = stream.next_nonblank()
        if first is None:
            yield self._quarantine("file", EMPTY_FILE, "file holds no JSON")
            return
        line_no, line = first
        if line.startswith(UTF8_BOM):
            line = line[len(UTF8_BOM) :]
        text = line.strip()
        # A first line that is a whole object means NDJSON (a compact single resource is one-line NDJSON);
        # anything else is one pretty-printed document.
        if text.startswith(b"{") and text.endswith(b"}"):
            yield from self._ndjson(stream, line_no, line)
        else:
            yield from self._document(stream, line_no, line)

    # -- NDJSON ------------------------------------------------------------------------------------------------
    def _ndjson(self, stream: _Lines, line_no: int, line: bytes | None) -> Iterator[Record]:
        while line is not None:
            position = f"line {line_no}"
            if line is _Lines.OVERSIZED:
                yield self._quarantine(
                    position, RECORD_TOO_LARGE, f"line longer than {self.limits.max_document_bytes} bytes"
                )
            else:
                yield from self._value_from_bytes(line, position)
            nxt = stream.next_nonblank()
            if nxt is None:
                return
            line_no, line = nxt

    # -- one JSON document ----------------------------------------------------------------------------------------
    def _document(self, stream: _Lines, line_no: int, first: bytes) -> Iterator[Record]:
        if first is _Lines.OVERSIZED:
            yield self._quarantine(
                "file", RECORD_TOO_LARGE, f"document larger than {self.limits.max_document_bytes} bytes"
            )
            return
        rest = stream.read_rest(self.limits.max_document_bytes - len(first))
        if rest is None:
            yield self._quarantine(
                "file", RECORD_TOO_LARGE, f"document larger than {self.limits.max_document_bytes} bytes"
            )
            return
        data = first + rest
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield self._quarantine("file", INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}", data)
            return
        try:
            value = json.loads(text)
        except RecursionError:
            yield self._quarantine("file", TOO_DEEP, f"nesting deeper than {self.limits.max_depth}", text)
            return
        except json.JSONDecodeError as exc:
            # NDJSON whose first line is broken: keep the good lines, quarantine the bad ones.
            lines = text.splitlines()
            if len(lines) > 1 and any(self._is_object(candidate) for candidate in lines[1:]):
                for offset, candidate in enumerate(lines):
                    if candidate.strip():
                        yield from self._value_from_text(candidate, f"line {line_no + offset}")
                return
            reason = TRUNCATED if exc.pos >= len(text.rstrip()) else MALFORMED_JSON
            yield self._quarantine("file", reason, f"{exc.msg} at line {exc.lineno} column {exc.colno}", text)
            return
        yield from self._value(value, "file", text)

    @staticmethod
    def _is_object(text: str) -> bool:
        stripped = text.strip()
        if not (stripped.startswith("{") and stripped.endswith("}")):
            return False
        try:
            return isinstance(json.loads(stripped), dict)
        except (json.JSONDecodeError, RecursionError):
            return False

    # -- values ------------------------------------------------------------------------------------------------
    def _value_from_bytes(self, data: bytes, position: str) -> Iterator[Record]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield self._quarantine(position, INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}", data)
            return
        yield from self._value_from_text(text, position)

    def _value_from_text(self, text: str, position: str) -> Iterator[Record]:
        text = text.strip().lstrip("\ufeff")
        try:
            value = json.loads(text)
        except RecursionError:
            yield self._quarantine(position, TOO_DEEP, f"nesting deeper than {self.limits.max_depth}", text)
            return
        except json.JSONDecodeError as exc:
            reason = TRUNCATED if exc.pos >= len(text) else MALFORMED_JSON
            yield self._quarantine(position, reason, f"{exc.msg} at column {exc.colno}", text)
            return
        yield from self._value(value, position, text)

    def _value(self, value: Any, position: str, text: str) -> Iterator[Record]:
        """Classify one parsed JSON value; `text` is its original form (kept for Encounters, sliced for errors)."""
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            yield self._quarantine(position, NOT_FHIR, "JSON value has no resourceType", text)
            return
        # Counting brackets is cheap and bounds the depth, so the walk runs only for unusually nested input.
        if text.count("{") + text.count("[") > self.limits.max_depth and _depth_exceeds(value, self.limits.max_depth):
            yield self._quarantine(position, TOO_DEEP, f"nesting deeper than {self.limits.max_depth}", text)
            return
        rtype = value["resourceType"]
        if rtype == "Bundle":
            yield from self._bundle(value, position)
        elif rtype == "Encounter":
            yield self._resource(value, position, text, {}, {})
        else:
            yield Record("skipped", position, resource_type=rtype)

    def _bundle(self, bundle: dict[str, Any], position: str) -> Iterator[Record]:
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            yield self._quarantine(position, BAD_BUNDLE_ENTRY, "Bundle.entry is not a list", json.dumps(entries))
            return
        index = _BundleIndex.of(entries)
        prefix = "" if position == "file" else f"{position} "
        for i, entry in enumerate(entries):
            where = f"{prefix}entry {i}"
            if not isinstance(entry, dict):
                yield self._quarantine(where, BAD_BUNDLE_ENTRY, "entry is not an object", json.dumps(entry))
                continue
            request = entry.get("request")
            if isinstance(request, dict) and str(request.get("method", "")).upper() == "DELETE":
                match = _ENCOUNTER_URL.match(str(request.get("url", "")))
                if match:
                    yield Record("delete", where, resource_type="Encounter", resource_id=match.group(1))
                else:
                    yield Record("skipped", where, resource_type=str(request.get("url", "")).split("/")[0] or None)
                continue
            resource = entry.get("resource")
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                yield self._quarantine(where, BAD_BUNDLE_ENTRY, "entry has no FHIR resource", json.dumps(entry))
                continue
            rtype = resource["resourceType"]
            if rtype == "Encounter":
                ref_map, ref_names = index.context(resource)
                yield self._resource(resource, where, json.dumps(resource, ensure_ascii=False), ref_map, ref_names)
            elif rtype == "Bundle":
                yield from self._bundle(resource, where)
            else:
                yield Record("skipped", where, resource_type=rtype)

    def _resource(
        self,
        value: dict[str, Any],
        position: str,
        text: str,
        ref_map: dict[str, str],
        ref_names: dict[str, str],
    ) -> Record:
        rid = value.get("id")
        return Record(
            "resource",
            position,
            resource_type="Encounter",
            resource_id=rid if isinstance(rid, str) else None,
            resource_json=text,
            ref_map=ref_map,
            ref_names=ref_names,
        )

    def _quarantine(self, position: str, reason: str, message: str, raw: str | bytes | None = None) -> Record:
        if isinstance(raw, bytes):
            raw = raw[: self.limits.raw_slice_chars * 4].decode("utf-8", errors="replace")
        return Record(
            "quarantine",
            position,
            reason=reason,
            message=message,
            raw_slice=raw[: self.limits.raw_slice_chars] if raw is not None else None,
        )


class _Lines:
    """Line reader with a bound on line length; an over-long line is skipped and reported as OVERSIZED."""

    OVERSIZED = b"\x00<oversized>"

    def __init__(self, stream: io.BufferedReader, max_line: int) -> None:
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
