"""Reading a batch: its files split into records, flattened (and the views' versions checked), cached once, and
counted in one aggregation; a batch whose reading kills a worker is read apart until every part lands."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from streaming.bronze.flatten import flatten
from streaming.bronze.records import LandedFile, poison_records, read_records
from streaming.pipeline import views as view_tables
from streaming.pipeline.deps import BatchDeps, BatchStats
from streaming.pipeline.failures import worker_died
from streaming.pipeline.views import ViewStats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchRead:
    """A batch's flattened rows and their statistics, and the cached DataFrames they are made of."""

    rows: DataFrame
    stats: BatchStats
    cached: tuple[DataFrame, ...]
    # The views' resource versions, checked and ordered (views.checked_versions), and their counts by resource
    # type; None and empty when only encounter runs.
    versions: DataFrame | None = None
    counts: Mapping[str, ViewStats] = field(default_factory=dict)

    def unpersist(self) -> None:
        for df in self.cached:
            df.unpersist()


@dataclass(frozen=True)
class _Part:
    """What reading some of a batch's files gives: the flattened rows, the views' versions, the cached records."""

    rows: DataFrame
    versions: DataFrame | None = None
    records: DataFrame | None = None  # cached once for the Encounter path and the views alike

    @property
    def cached(self) -> tuple[DataFrame, ...]:
        return tuple(df for df in (self.rows, self.versions, self.records) if df is not None)

    def unpersist(self) -> None:
        for df in self.cached:
            df.unpersist()

    def fill(self) -> None:
        """Read now: the caches are filled, so this part is not read again together with the others."""
        self.rows.count()
        if self.versions is not None:
            self.versions.count()


def _assemble(parts: Sequence[_Part]) -> BatchRead:
    """The batch's read from its parts: rows and versions unioned, every statistic in one aggregation each."""
    rows = functools.reduce(lambda a, b: a.unionByName(b), [p.rows for p in parts])
    found = [p.versions for p in parts if p.versions is not None]
    versions = functools.reduce(lambda a, b: a.unionByName(b), found) if found else None
    counts = view_tables.type_counts(versions) if versions is not None else {}
    cached = tuple(df for p in parts for df in p.cached)
    return BatchRead(rows, aggregate(rows), cached, versions, counts)


def read_apart(deps: BatchDeps, files: Sequence[LandedFile], started: datetime) -> BatchRead:
    """The batch's rows, read whole; if a worker dies reading them, read apart until every part lands.

    A worker killed by the OS (out of memory) dies again on every retry of the same batch, so the stream would stop
    for good. Apart means the same work the batch does (split, flatten, cache), on halves of the files, each
    finished before the next starts: files that only die together then land. Only a file that kills its worker
    when read alone, twice, is quarantined; one that died for another reason and then parses lands.
    """
    whole = _read(deps, files, started)
    try:
        return _assemble([whole])
    except Exception as exc:
        whole.unpersist()
        if not worker_died(exc):
            raise
    log.error("a worker died reading the batch's %d files; reading them apart", len(files))
    parts, poison = _land(deps, files, started, died=1)
    if poison:
        log.error(
            "%d of %d files kill the parsing worker when read alone: %s",
            len(poison),
            len(files),
            [f.uri for f in poison],
        )
        parts.append(_read(deps, [], started, poison=poison))
    return _assemble(parts)


def _land(
    deps: BatchDeps, files: Sequence[LandedFile], started: datetime, *, died: int = 0
) -> tuple[list[_Part], list[LandedFile]]:
    """Read `files` as one finished (cached) part; on a worker death, each half apart; a file alone gets two tries.

    `died`: how often reading exactly these files already killed a worker. Returns the parts that landed and the
    files that killed their worker alone twice.
    """
    while died < (2 if len(files) == 1 else 1):
        part = _read(deps, files, started)
        try:
            part.fill()  # fills the cache: this part is read now, not together with the others at the write
            return [part], []
        except Exception as exc:
            part.unpersist()
            if not worker_died(exc):
                raise
            died += 1
    if len(files) == 1:
        return [], list(files)
    half = len(files) // 2
    first, first_poison = _land(deps, files[:half], started)
    second, second_poison = _land(deps, files[half:], started)
    return first + second, first_poison + second_poison


def _read(deps: BatchDeps, files: Sequence[LandedFile], started: datetime, poison: Sequence[LandedFile] = ()) -> _Part:
    """The batch's flattened records, cached for the statistics and the writes; `poison` files are quarantined.

    With views, the split records are cached once: the Encounter path flattens its records from them, the views
    check theirs (views.checked_versions).
    """
    fhir = deps.config.fhir
    readable = [f for f in files if f not in poison]
    types = view_tables.resource_types(deps.views)
    records = read_records(deps.spark, readable, fhir, types) if readable else None
    if poison:
        quarantined = poison_records(deps.spark, poison)
        records = quarantined if records is None else records.unionByName(quarantined)
    assert records is not None  # a batch has at least one file
    if not deps.views:
        return _Part(only_positions(_flatten(deps, records, started), deps.positions).persist())
    records = records.persist()
    rows = _flatten(deps, view_tables.encounter_records(records, deps.views), started)
    own = sorted({v.resource for v in deps.views})
    versions = view_tables.checked_versions(records, own, fhir.future_tolerance_hours)
    return _Part(
        only_positions(rows, deps.positions).persist(), only_positions(versions, deps.positions).persist(), records
    )


def _flatten(deps: BatchDeps, records: DataFrame, started: datetime) -> DataFrame:
    """The Encounter path's rows of `records` (flatten, with the job's settings)."""
    fhir = deps.config.fhir
    return flatten(
        records,
        ingested_at=started,
        keep_resource_json=fhir.keep_resource_json,
        raw_slice_chars=fhir.raw_slice_chars,
        future_tolerance_hours=fhir.future_tolerance_hours,
        key_scope=deps.config.key_scope,
        source=deps.config.source,
    )


def only_positions(rows: DataFrame, positions: Mapping[str, frozenset[str]]) -> DataFrame:
    """The rows of files limited to some positions (deps.positions) reduced to those; other files' rows all."""
    if not positions:
        return rows
    limited = F.col("sourcename").isin(list(positions))
    wanted = [F.lit(f"{uri}\u0000{p}") for uri, chosen in positions.items() for p in chosen]
    chosen = F.concat_ws("\u0000", "sourcename", "source_position").isin(wanted) if wanted else F.lit(False)
    return rows.where(~limited | chosen)


def aggregate(rows: DataFrame) -> BatchStats:
    """All batch statistics in one pass (this action also fills the cache the writes then read)."""
    good = F.col("reject_reason").isNull()
    row = rows.agg(
        F.count(F.lit(1)).alias("rows_in"),
        F.count(F.when((F.col("kind") == "resource") & good, 1)).alias("rows_written"),
        F.count(F.when((F.col("kind") == "delete") & good, 1)).alias("delete_requests"),
        F.count(F.when(~good, 1)).alias("rows_rejected"),
        F.count(F.when(F.col("kind") == "skipped", 1)).alias("rows_skipped"),
    ).first()
    assert row is not None  # an aggregation without grouping always returns one row
    return BatchStats(**row.asDict())
