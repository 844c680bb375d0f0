"""Split one landed file into FHIR records, whatever its shape, without Spark: Bundles, references, deletes.

A landing prefix mixes single resources (compact or pretty, with or without a BOM), Bundles, NDJSON and gzip of
each. Spark's JSON reader handles one shape per read (`multiLine=true` keeps only the first NDJSON line, line mode
cannot read a pretty file), so each file is read as a byte stream (`bytestream.py`: gzip, BOM, UTF-8, size limits,
NDJSON or one document, JSON syntax) and its JSON values are turned here into records:

- `resource`: an Encounter (or a resource of another type a running view reads), with its original JSON text and
  the Bundle context needed to resolve references;
- `delete`: a Bundle entry asking to delete an Encounter (or a resource of a type a running view reads);
- `skipped`: a well-formed resource of another type (counted, not kept);
- `quarantine`: anything that cannot become a row, with a reason code and a bounded slice of the raw text.

Flattening the Encounter into columns is not done here: that is Spark SQL, in `flatten.py`.

Every string a Record carries is valid Unicode (encodable as UTF-8), so it always converts to Arrow: a lone
surrogate escape (`"\\ud800"`) in the input stays an escape in `resource_json` and is backslash-escaped elsewhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import IO, Any, Literal

from streaming.config import FhirConfig
from streaming.fhir.bytestream import Rejected, read_values
from streaming.fhir.mapping import FHIR_ID
from streaming.fhir.reasons import BAD_BUNDLE_ENTRY, NOT_FHIR, TOO_DEEP

_FHIR_ID = re.compile(FHIR_ID)  # used with fullmatch: the whole text, no trailing newline

RecordKind = Literal["resource", "delete", "skipped", "quarantine"]


@dataclass(frozen=True)
class Record:
    """One output of splitting a file; which fields are set depends on `kind`."""

    kind: RecordKind
    position: str  # "line 3", "entry 5", "line 2 entry 4" or "file"
    resource_type: str | None = None
    resource_id: str | None = None
    resource_json: str | None = None
    ref_map: Mapping[str, str] = field(default_factory=dict)  # reference -> resolved "Type/id" (Bundle only)
    ref_names: Mapping[str, str] = field(default_factory=dict)  # reference -> name of the Organization/Location
    reason: str | None = None
    message: str | None = None
    raw_slice: str | None = None
    # The enclosing Bundle's meta.lastUpdated and timestamp as written (resources and deletes of a Bundle only):
    # a version's event time when it has no lastUpdated of its own (see ordering.py).
    bundle_last_updated: str | None = None
    bundle_timestamp: str | None = None
    # The entry's response.lastModified (a history Bundle's time of that version, a DELETE's included): before
    # the Bundle's times, which say when the Bundle was assembled.
    entry_last_modified: str | None = None
    bundle_source: str | None = None  # the Bundle's meta.source: a DELETE's source system (config.key_scope)


def _stamped(record: Record, bundle: dict[str, Any], entry: dict[str, Any]) -> Record:
    """A Bundle's resource or delete, carrying its entry's and the Bundle's times (its event time when it has none
    of its own)."""
    if record.kind not in ("resource", "delete"):
        return record
    meta = bundle.get("meta")
    updated = meta.get("lastUpdated") if isinstance(meta, dict) else None
    source = meta.get("source") if isinstance(meta, dict) else None
    stamp = bundle.get("timestamp")
    response = entry.get("response")
    modified = response.get("lastModified") if isinstance(response, dict) else None
    return replace(
        record,
        bundle_last_updated=updated if isinstance(updated, str) else None,
        bundle_timestamp=stamp if isinstance(stamp, str) else None,
        entry_last_modified=modified if isinstance(modified, str) else None,
        bundle_source=source if isinstance(source, str) else None,
    )


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


def _delete_target(url: str) -> tuple[str | None, str | None]:
    """(resource type, id) a DELETE request's url names; id is None for a conditional (`Type?search`) delete."""
    path, query, _ = url.partition("?")
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if query or len(parts) < 2:
        return (parts[-1] if parts else None), None
    return parts[-2], parts[-1]


def _conditional_keys(request: Any, rtype: str) -> list[str]:
    """The conditional references (`Type?search`) an entry's request describes.

    A conditional reference (`Organization?identifier=s|v`) is kept as sent, but it may still name the entry that a
    conditional create (ifNoneExist) or conditional update (url) in this Bundle describes.
    """
    keys: list[str] = []
    if isinstance(request, dict):
        if_none_exist, url = request.get("ifNoneExist"), request.get("url")
        if isinstance(if_none_exist, str) and if_none_exist:
            keys.append(f"{rtype}?{if_none_exist.lstrip('?')}")
        if isinstance(url, str) and url.startswith(f"{rtype}?"):
            keys.append(url)
    return keys


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
            rtype = resource.get("resourceType")
            if not isinstance(rtype, str):
                continue
            keys = index._keys(entry, resource, rtype)
            name = resource.get("name")
            if rtype in ("Organization", "Location") and isinstance(name, str) and name:
                for key in keys:
                    index.names.setdefault(key, name)
        return index

    def _keys(self, entry: dict[str, Any], resource: dict[str, Any], rtype: str) -> list[str]:
        """The references that may name this entry (Type/id, fullUrl, conditional urls); records fullUrl -> Type/id."""
        rid = resource.get("id")
        keys: list[str] = []
        local = f"{rtype}/{rid}" if isinstance(rid, str) and rid else None
        if local:
            keys.append(local)
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str) and full_url:
            if local:
                self.targets[full_url] = local
            keys.append(full_url)
        keys.extend(_conditional_keys(entry.get("request"), rtype))
        return keys

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


# The resource types that become records by default: the Encounter-only job's.
ENCOUNTER_ONLY: frozenset[str] = frozenset({"Encounter"})


class FileSplitter:
    """Turn a file's bytes into Records; one instance per set of limits, reused across files.

    `types`: the resource types that become `resource` and `delete` records (the running views'); every other
    well-formed resource is `skipped`.
    """

    def __init__(self, limits: FhirConfig, types: frozenset[str] = ENCOUNTER_ONLY) -> None:
        self.limits = limits
        self.types = types

    def split(self, raw: IO[bytes], size: int | None = None) -> Iterator[Record]:
        """Yield the records of one file; never raises for bad content (that becomes a quarantine record).

        Records are produced lazily, while the file is read (`bytestream.read_values`). When gzip content turns out
        to be damaged or larger than `max_file_bytes` after decompression, the records read before that point stay
        and one `file` quarantine record says why reading stopped.
        """
        for piece in read_values(raw, self.limits, size):
            if isinstance(piece, Rejected):
                yield self._quarantine(piece.position, piece.reason, piece.message, piece.raw)
            else:
                yield from self._value(piece.value, piece.position, piece.text)

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
        elif rtype in self.types:
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
            yield from self._entry(entry, f"{prefix}entry {i}", bundle, index, depth, too_deep)

    def _entry(
        self, entry: Any, where: str, bundle: dict[str, Any], index: _BundleIndex, depth: int, too_deep: bool
    ) -> Iterator[Record]:
        """Records of one Bundle entry at `where`; `depth` and `too_deep` are its Bundle's (see `_bundle`)."""
        limit = self.limits.max_depth
        if not isinstance(entry, dict):
            yield self._quarantine(where, BAD_BUNDLE_ENTRY, "entry is not an object", _slice_of(entry))
            return
        # The entry object sits at depth + 2 (Bundle -> entry array -> entry).
        if too_deep and _depth_exceeds(entry, limit - depth - 1):
            yield self._quarantine(where, TOO_DEEP, f"nesting deeper than {limit}", _slice_of(entry))
            return
        request = entry.get("request")
        if isinstance(request, dict) and str(request.get("method", "")).upper() == "DELETE":
            yield _stamped(self._delete(where, request, entry), bundle, entry)
            return
        resource = entry.get("resource")
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            yield self._quarantine(where, BAD_BUNDLE_ENTRY, "entry has no FHIR resource", _slice_of(entry))
            return
        rtype = resource["resourceType"]
        if rtype in self.types:
            ref_map, ref_names = index.context(resource)
            yield _stamped(self._resource(resource, where, _resource_text(resource), ref_map, ref_names), bundle, entry)
        elif rtype == "Bundle":
            yield from self._bundle(resource, where, depth + 3)
        else:
            yield Record("skipped", where, resource_type=_text(rtype))

    def _delete(self, position: str, request: dict[str, Any], entry: dict[str, Any]) -> Record:
        url = request.get("url")
        rtype, rid = _delete_target(url) if isinstance(url, str) else (None, None)
        if rtype is None or rtype not in self.types:
            return Record("skipped", position, resource_type=_text(rtype) if rtype else None)
        if rid is None or not _FHIR_ID.fullmatch(rid):
            # A conditional delete (`Encounter?identifier=...`) or a malformed id names no row to delete.
            article = "an" if rtype[:1] in "AEIOU" else "a"
            return self._quarantine(
                position, BAD_BUNDLE_ENTRY, f"DELETE of {article} {rtype} without a literal id", _slice_of(entry)
            )
        return Record("delete", position, resource_type=rtype, resource_id=rid)

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
            resource_type=_text(value["resourceType"]),
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
