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

Every string a Record carries is valid Unicode (encodable as UTF-8), so it always converts to Arrow: a lone
surrogate escape (`"\\ud800"`) in the input stays an escape in `resource_json` and is backslash-escaped elsewhere.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
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

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


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


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Return True if `value` nests objects/arrays deeper than `limit` (iterative: no recursion limit).

    An object or array counts 1, its children 2, and so on; a scalar counts 0.
    """
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
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


def _text(value: str) -> str:
    """`value` as valid Unicode: a lone surrogate (from a JSON `\\udXXX` escape) becomes a visible escape."""
    if value.isascii():
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _texts(mapping: Mapping[str, str]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in mapping.items()}


def _resource_text(resource: dict[str, Any]) -> str:
    """JSON text of a resource taken out of a Bundle: as written (non-ASCII kept), lone surrogates as escapes."""
    text = json.dumps(resource, ensure_ascii=False)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(resource)  # \uXXXX escapes: the same JSON value, now encodable
    return text


def _slice_of(value: Any) -> str | None:
    """JSON text of a rejected value for its quarantine row (sliced later); never raises."""
    try:
        return json.dumps(value)
    except (ValueError, TypeError, RecursionError):
        return None


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


def _delete_target(url: str) -> tuple[str | None, str | None]:
    """(resource type, id) a DELETE request's url names; id is None for a conditional (`Type?search`) delete."""
    path, query, _ = url.partition("?")
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if query or len(parts) < 2:
        return (parts[-1] if parts else None), None
    return parts[-2], parts[-1]


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
            if not isinstance(rtype, str):
                continue
            keys: list[str] = []
            local = f"{rtype}/{rid}" if isinstance(rid, str) and rid else None
            if local:
                keys.append(local)
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str) and full_url:
                if local:
                    index.targets[full_url] = local
                keys.append(full_url)
            # A conditional reference (`Organization?identifier=s|v`) is kept as sent, but it may still name the
            # entry that a conditional create (ifNoneExist) or conditional update (url) in this Bundle describes.
            request = entry.get("request")
            if isinstance(request, dict):
                if_none_exist, url = request.get("ifNoneExist"), request.get("url")
                if isinstance(if_none_exist, str) and if_none_exist:
                    keys.append(f"{rtype}?{if_none_exist.lstrip('?')}")
                if isinstance(url, str) and url.startswith(f"{rtype}?"):
                    keys.append(url)
            name = resource.get("name")
            if rtype in ("Organization", "Location") and isinstance(name, str) and name:
                for key in keys:
                    index.names.setdefault(key, name)
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
        return _texts(ref_map), _texts(ref_names)


class FileSplitter:
    """Turn a file's bytes into Records; one instance per set of limits, reused across files."""

    def __init__(self, limits: FhirConfig) -> None:
        self.limits = limits

    # -- entry point -------------------------------------------------------------------------------------------
    def split(self, raw: IO[bytes], size: int | None = None) -> Iterator[Record]:
        """Yield the records of one file; never raises for bad content (that becomes a quarantine record).

        Records are produced lazily, while the file is read. When gzip content turns out to be damaged or larger
        than `max_file_bytes` after decompression, the records read before that point stay and one `file`
        quarantine record says why reading stopped.
        """
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

    # -- NDJSON ------------------------------------------------------------------------------------------------
    def _ndjson(self, stream: _Lines, head: Iterable[tuple[int, bytes]]) -> Iterator[Record]:
        for line_no, line in _chain(head, stream):
            position = f"line {line_no}"
            if line is _Lines.OVERSIZED:
                yield self._quarantine(
                    position, RECORD_TOO_LARGE, f"line longer than {self.limits.max_document_bytes} bytes"
                )
            else:
                yield from self._value_from_bytes(line, position)

    # -- one JSON document ----------------------------------------------------------------------------------------
    def _document(self, stream: _Lines, head: list[tuple[int, bytes]]) -> Iterator[Record]:
        too_large = f"document larger than {self.limits.max_document_bytes} bytes"
        if any(line is _Lines.OVERSIZED for _, line in head):
            yield self._quarantine("file", RECORD_TOO_LARGE, too_large)
            return
        # Blank lines between the head lines were skipped; put them back so line numbers stay those of the file.
        parts = [head[0][1]]
        for (before, _), (line_no, line) in pairwise(head):
            parts += [b"\n" * (line_no - before - 1), line]
        data = b"".join(parts)
        rest = stream.read_rest(self.limits.max_document_bytes - len(data))
        if rest is None:
            yield self._quarantine("file", RECORD_TOO_LARGE, too_large)
            return
        data += rest
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
        except ValueError as exc:
            # NDJSON whose first lines are broken: keep the good lines, quarantine the bad ones.
            lines = text.split("\n")
            if len(lines) > 1 and any(_is_fhir_line(candidate) for candidate in lines[1:]):
                for offset, candidate in enumerate(lines):
                    if candidate.strip() and candidate.strip() != "\ufeff":
                        yield from self._value_from_text(candidate, f"line {head[0][0] + offset}")
                return
            yield self._json_error("file", exc, text)
            return
        yield from self._value(value, "file", text)

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
        except ValueError as exc:
            yield self._json_error(position, exc, text)
            return
        yield from self._value(value, position, text)

    def _json_error(self, position: str, exc: ValueError, text: str) -> Record:
        """Quarantine text that json.loads refused: truncated if the JSON ends early, else malformed."""
        if not isinstance(exc, json.JSONDecodeError):
            # int() refuses numbers over sys.get_int_max_str_digits() digits: valid JSON, but not a plausible one.
            return self._quarantine(position, MALFORMED_JSON, "number with too many digits", text)
        # "Unterminated string" means the text ended inside a string (a raw line break would be a control
        # character error instead): the usual way a cut-off line or file ends.
        ends_early = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        where = f"line {exc.lineno} column {exc.colno}" if position == "file" else f"column {exc.colno}"
        return self._quarantine(position, TRUNCATED if ends_early else MALFORMED_JSON, f"{exc.msg} at {where}", text)

    def _value(self, value: Any, position: str, text: str) -> Iterator[Record]:
        """Classify one parsed JSON value; `text` is its original form (kept for Encounters, sliced for errors)."""
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            yield self._quarantine(position, NOT_FHIR, "JSON value has no resourceType", text)
            return
        rtype = value["resourceType"]
        if rtype == "Bundle":
            yield from self._bundle(value, position, 1, text)
            return
        # Counting brackets is cheap and bounds the depth, so the walk runs only for unusually nested input.
        limit = self.limits.max_depth
        if text.count("{") + text.count("[") > limit and _depth_exceeds(value, limit):
            yield self._quarantine(position, TOO_DEEP, f"nesting deeper than {limit}", text)
        elif rtype == "Encounter":
            yield self._resource(value, position, text, {}, {})
        else:
            yield Record("skipped", position, resource_type=_text(rtype))

    def _bundle(self, bundle: dict[str, Any], position: str, depth: int, text: str | None = None) -> Iterator[Record]:
        """Records of a Bundle's entries; `depth` is the Bundle object's nesting depth in its file (1 = root).

        When the Bundle nests too deeply, depth is checked per entry, so one entry nested too deeply is quarantined
        and its neighbours still land. `text` is the Bundle's original JSON, when it is a whole line or file.
        """
        limit = self.limits.max_depth
        entries = bundle.get("entry")
        if entries is None:
            entries = []
        too_deep = _depth_exceeds(bundle, limit - depth + 1)  # one walk; per-entry walks only when this fails
        if too_deep and _depth_exceeds({k: v for k, v in bundle.items() if k != "entry"}, limit - depth + 1):
            raw = text if text is not None else _slice_of(bundle)
            yield self._quarantine(position, TOO_DEEP, f"nesting deeper than {limit}", raw)
            return
        if not isinstance(entries, list):
            yield self._quarantine(position, BAD_BUNDLE_ENTRY, "Bundle.entry is not a list", _slice_of(entries))
            return
        index = _BundleIndex.of(entries)
        prefix = "" if position == "file" else f"{position} "
        for i, entry in enumerate(entries):
            where = f"{prefix}entry {i}"
            if not isinstance(entry, dict):
                yield self._quarantine(where, BAD_BUNDLE_ENTRY, "entry is not an object", _slice_of(entry))
                continue
            # The entry object sits at depth + 2 (Bundle -> entry array -> entry).
            if too_deep and _depth_exceeds(entry, limit - depth - 1):
                yield self._quarantine(where, TOO_DEEP, f"nesting deeper than {limit}", _slice_of(entry))
                continue
            request = entry.get("request")
            if isinstance(request, dict) and str(request.get("method", "")).upper() == "DELETE":
                yield self._delete(where, request, entry)
                continue
            resource = entry.get("resource")
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                yield self._quarantine(where, BAD_BUNDLE_ENTRY, "entry has no FHIR resource", _slice_of(entry))
                continue
            rtype = resource["resourceType"]
            if rtype == "Encounter":
                ref_map, ref_names = index.context(resource)
                yield self._resource(resource, where, _resource_text(resource), ref_map, ref_names)
            elif rtype == "Bundle":
                yield from self._bundle(resource, where, depth + 3)
            else:
                yield Record("skipped", where, resource_type=_text(rtype))

    def _delete(self, position: str, request: dict[str, Any], entry: dict[str, Any]) -> Record:
        url = request.get("url")
        rtype, rid = _delete_target(url) if isinstance(url, str) else (None, None)
        if rtype != "Encounter":
            return Record("skipped", position, resource_type=_text(rtype) if rtype else None)
        if rid is None or not _FHIR_ID.match(rid):
            # A conditional delete (`Encounter?identifier=...`) or a malformed id names no row to delete.
            return self._quarantine(
                position, BAD_BUNDLE_ENTRY, "DELETE of an Encounter without a literal id", _slice_of(entry)
            )
        return Record("delete", position, resource_type="Encounter", resource_id=rid)

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
            resource_id=_text(rid) if isinstance(rid, str) else None,
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
            raw_slice=_text(raw[: self.limits.raw_slice_chars]) if raw is not None else None,
        )


def _chain(head: Iterable[tuple[int, bytes]], stream: _Lines) -> Iterator[tuple[int, bytes]]:
    yield from head
    while (nxt := stream.next_nonblank()) is not None:
        yield nxt


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
