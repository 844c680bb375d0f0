"""FHIR files -> one row per resource of any type, for running a view without the job (`views run`).

The bytes are read as the job reads them (`bytestream.read_values`: gzip, BOM, NDJSON or one document, the size
limits); Bundles are split into their entries here, each with the Bundle's `ref_map` (fullUrl -> `Type/id`), so
getReferenceKey() resolves `urn:uuid:` references as the Encounter mapping does. The job's own splitter
(`parse.py`) keeps Encounters only, which a view over another resource type cannot use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from streaming.adapters.storage import open_uri
from streaming.bronze.records import LandedFile
from streaming.config import ConfigError, FhirConfig
from streaming.fhir.bytestream import Rejected, read_values
from streaming.fhir.reasons import BAD_BUNDLE_ENTRY, NOT_FHIR, UNREADABLE

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_ARROW_SCHEMA = pa.schema(
    [
        ("sourcename", pa.string()),
        ("position", pa.string()),
        ("resource_type", pa.string()),
        ("resource_json", pa.string()),
        ("ref_map", pa.map_(pa.string(), pa.string())),
        ("reason", pa.string()),  # why the input gave no resource (reasons.py); null for a resource
    ]
)
SCHEMA = (
    "sourcename string, position string, resource_type string, resource_json string, ref_map map<string,string>,"
    " reason string"
)

_Row = tuple[str, str, str | None, str | None, list[tuple[str, str]], str | None]


def list_files(source: str) -> list[LandedFile]:
    """The files of a local folder (recursively, hidden ones skipped) or the one file `source` names."""
    path = Path(source)
    if path.is_file():
        paths = [path]
    elif path.is_dir():
        # Hidden below the folder (`.git/`, `.DS_Store`), not above it: a source may live in `~/.cache/...`.
        visible = (p for p in path.rglob("*") if not any(part.startswith(".") for part in p.relative_to(path).parts))
        paths = sorted(p for p in visible if p.is_file())
    else:
        raise ConfigError(f"--source {source}: no such file or folder")
    if not paths:
        raise ConfigError(f"--source {source}: the folder holds no files")
    files = []
    for p in paths:
        stat = p.stat()
        # `file:/path` as Spark names files, not percent-encoded (storage.local_path cuts the prefix only).
        files.append(LandedFile(f"file:{p.resolve()}", stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC)))
    return files


def _resource_type(value: Any) -> str | None:
    """The resourceType of a JSON value, when it is an object with one."""
    kind = value.get("resourceType") if isinstance(value, dict) else None
    return kind if isinstance(kind, str) else None


def _bundle(uri: str, bundle: dict[str, Any], position: str) -> Iterator[_Row]:
    """The resources of a Bundle's entries (nested Bundles too), each with the Bundle's fullUrl -> `Type/id`."""
    entries = bundle.get("entry")
    entries = entries if isinstance(entries, list) else []
    refs: list[tuple[str, str]] = []
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        kind, rid, url = _resource_type(resource), None, None
        if kind is not None and isinstance(resource, dict):
            rid, url = resource.get("id"), entry.get("fullUrl")
        if isinstance(rid, str) and isinstance(url, str) and url:
            refs.append((url, f"{kind}/{rid}"))
    prefix = "" if position == "file" else f"{position} "
    for i, entry in enumerate(entries):
        where = f"{prefix}entry {i}"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        kind = _resource_type(resource)
        if kind == "Bundle" and isinstance(resource, dict):
            yield from _bundle(uri, resource, where)
        elif kind is not None:
            yield uri, where, kind, json.dumps(resource, ensure_ascii=False), refs, None
        elif not (isinstance(entry, dict) and isinstance(entry.get("request"), dict)):  # a DELETE has no resource
            yield uri, where, None, None, [], BAD_BUNDLE_ENTRY


def resources_of(uri: str, limits: FhirConfig) -> Iterator[_Row]:
    """The rows of one file: one per resource, one per input that is none (with its reason)."""
    try:
        with open_uri(uri) as raw:
            for piece in read_values(raw, limits):
                if isinstance(piece, Rejected):
                    yield uri, piece.position, None, None, [], piece.reason
                    continue
                kind = _resource_type(piece.value)
                if kind == "Bundle":
                    yield from _bundle(uri, piece.value, piece.position)
                elif kind is not None:
                    yield uri, piece.position, kind, piece.text, [], None
                else:
                    yield uri, piece.position, None, None, [], NOT_FHIR
    except OSError:
        yield uri, "file", None, None, [], UNREADABLE


def _split(limits: FhirConfig, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: file URIs in, resource rows out."""
    for batch in batches:
        rows = [row for uri in batch.column(0).to_pylist() for row in resources_of(uri, limits)]
        if rows:
            columns = list(zip(*rows, strict=True))
            arrays = [pa.array(c, t) for c, t in zip(columns, _ARROW_SCHEMA.types, strict=True)]
            yield pa.RecordBatch.from_arrays(arrays, schema=_ARROW_SCHEMA)


def read_resources(spark: SparkSession, files: Sequence[LandedFile], limits: FhirConfig) -> DataFrame:
    """One row per resource in `files` (SCHEMA), read on the executors, one task per core."""
    slices = max(1, min(len(files), spark.sparkContext.defaultParallelism))
    listing = spark.createDataFrame(spark.sparkContext.parallelize([(f.uri,) for f in files], slices), "uri string")
    return listing.mapInArrow(lambda batches: _split(limits, iter(batches)), SCHEMA)
