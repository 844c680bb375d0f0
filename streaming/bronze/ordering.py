"""Which version of an encounter wins: the ordering rule in one place, with the cases docs/design.md and tests share.

The rule never compares an event time with a landing time:

- a version's *event time* is its own `meta.lastUpdated`, else its Bundle's `meta.lastUpdated`, else its Bundle's
  `timestamp` (a Bundle DELETE has only the latter two); a DELETE without one deletes the newest version it finds
  (it takes that version's ordering, see settle_timeless_deletes);
- a version with an event time beats every version without one; between two versions with one, the later event
  time wins; between two without, the later landing (file modification) time wins;
- equal values: the later file modification time, then the later file URI, then the later record in the file
  wins within a batch; across batches the one ingested later wins.

Hudi compares one field (`precombine_ts`, DefaultHoodieRecordPayload), so the two tiers share it: an event time is
kept as it is (it must be 1971 or later), a landing time is stored as 1970-01-01 plus its epoch milliseconds
counted as microseconds (1970-01-01 .. 1970-02-17 for landing times up to 2100), which sorts below every event
time. `last_updated` and `source_modified` keep both times readable.

A delete is a tombstone: the row stays with `is_deleted` true, its clinical columns null, in the partition
`__deleted__`, ordered like any version. An older version arriving after the delete loses to the tombstone; a
newer one brings the encounter back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pyspark.sql import Column, Window
from pyspark.sql import functions as F

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# Event times before this are no real FHIR clock (FHIR dates from 2011); below it lives the landing tier.
EVENT_TIME_FLOOR = datetime(1971, 1, 1, tzinfo=UTC)
# The partition every tombstone lives in; hospital_partition() never derives a `__` name from a hospital.
DELETED_PARTITION = "__deleted__"
# Within a batch, ties on precombine_ts are broken by these, later wins (see newest_versions).
TIE_BREAK = ("source_modified", "sourcename", "source_ordinal")
# How far above the version it found a DELETE without an event time is ordered: the finest step a timestamp has.
TOMBSTONE_STEP = timedelta(microseconds=1)


def event_time(
    last_updated: Column, entry_last_modified: Column, bundle_last_updated: Column, bundle_timestamp: Column
) -> Column:
    """The version's event time: its own meta.lastUpdated, else its Bundle entry's response.lastModified, else its
    Bundle's meta.lastUpdated, else the Bundle's timestamp.

    A Bundle time before EVENT_TIME_FLOOR (an unset clock, e.g. the epoch) counts as absent; a resource's own
    lastUpdated that early is rejected by flatten (`bad_datetime`) before it gets here.
    """
    floor = F.lit(EVENT_TIME_FLOOR).cast("timestamp")
    return F.coalesce(
        last_updated,
        F.when(entry_last_modified >= floor, entry_last_modified),
        F.when(bundle_last_updated >= floor, bundle_last_updated),
        F.when(bundle_timestamp >= floor, bundle_timestamp),
    )


def precombine_ts(event: Column, landed: Column) -> Column:
    """Hudi's ordering value: the event time, else the landing time moved into the tier below every event time."""
    return F.coalesce(event, F.timestamp_micros(F.unix_millis(landed)))


def newest_versions(rows: DataFrame, keys: Sequence[str] = ("encounter_id",)) -> DataFrame:
    """One row per key: the winner by precombine_ts, ties broken by TIE_BREAK (later wins); deterministic.

    Hudi's own pre-combine picks among equal ordering values in whatever order its shuffle delivers; this keeps
    the choice reproducible (a replayed batch writes the same row), and it replaces Hudi's pre-combine shuffle.
    """
    order = F.struct("precombine_ts", *TIE_BREAK)
    payload = F.struct(*[F.col(c) for c in rows.columns])
    return rows.groupBy(*keys).agg(F.max_by(payload, order).alias("_winner")).select("_winner.*")


def timeless_delete() -> Column:
    """A DELETE without an event time: its ordering is settled against what it finds (settle_timeless_deletes)."""
    return (F.col("kind") == "delete") & F.col("event_time").isNull()


def settle_timeless_deletes(
    candidates: DataFrame, stored: DataFrame | None, keys: Sequence[str] = ("encounter_id",)
) -> DataFrame:
    """A DELETE without an event time deletes the newest version it finds: it takes an ordering just above it.

    Its precombine_ts becomes the greatest of its own (landing tier), the newest version of the key before it in
    this batch (in TIE_BREAK order) and the stored one (`stored`: encounter_id, precombine_ts; None when there is no
    table yet), each found version plus one microsecond (TOMBSTONE_STEP). Strictly above: the version it deleted,
    read again (a replayed file, a re-sent copy), loses to the tombstone instead of tying it and coming back, while
    any newer version (one microsecond is the finest a timestamp holds) still brings the encounter back. A version
    after the delete in the batch is not one it found: it is ordered against the delete like any other.
    """
    step = F.expr(f"INTERVAL {TOMBSTONE_STEP.microseconds} MICROSECONDS")
    before = Window.partitionBy(*keys).orderBy(*TIE_BREAK).rowsBetween(Window.unboundedPreceding, -1)
    found = F.max(F.when(F.col("kind") == "resource", F.col("precombine_ts"))).over(before)
    settled = candidates.withColumn("_found", found + step)
    newest = [F.col("precombine_ts"), F.col("_found")]
    if stored is not None:
        wanted = candidates.where(timeless_delete()).select(*keys).distinct()
        known = stored.join(wanted, list(keys)).select(*keys, F.col("precombine_ts").alias("_stored"))
        settled = settled.join(F.broadcast(known), list(keys), "left")
        newest.append(F.col("_stored") + step)
    ordering = F.when(timeless_delete(), F.greatest(*newest)).otherwise(F.col("precombine_ts"))
    return settled.withColumn("precombine_ts", ordering).select(*candidates.columns)


def rows_deleted(winners: DataFrame, stored: DataFrame, keys: Sequence[str] = ("encounter_id",)) -> int:
    """How many encounters live in `stored` the winning tombstones replace (Hudi: the incoming wins a tie)."""
    tombstones = winners.where("is_deleted").select(*keys, F.col("precombine_ts").alias("_deleted_at"))
    live = stored.where(~F.col("is_deleted")).select(*keys, F.col("precombine_ts").alias("_stored_at"))
    return tombstones.join(live, list(keys)).where("_stored_at <= _deleted_at").count()


# -- the rule as cases: docs/design.md's table and tests/test_ordering.py read these --------------------------------


@dataclass(frozen=True)
class Version:
    """One version of an encounter as a case lands it; times are days relative to a base time."""

    kind: Literal["resource", "delete"] = "resource"
    event: int | None = None  # event time (days after the base); None: the version has none
    # Where the event time is written: the resource's meta.lastUpdated, or (in a Bundle) the Bundle's
    # meta.lastUpdated or timestamp. A delete has only the Bundle's.
    source: Literal["own", "bundle.meta", "bundle.timestamp"] = "own"
    own_event: int | None = None  # a resource in a Bundle may carry its own lastUpdated as well
    landed: int = 0  # file modification time, days relative to its batch's (stored: m, incoming: m + 1 day)

    def describe(self) -> str:
        what = "DELETE" if self.kind == "delete" else "version"
        if self.event is None:
            time = "no event time"
        else:
            where = {
                "own": "lastUpdated",
                "bundle.meta": "Bundle meta.lastUpdated",
                "bundle.timestamp": "Bundle.timestamp",
            }
            time = f"{where[self.source]} {_days(self.event)}"
        if self.own_event is not None:
            time = f"lastUpdated {_days(self.own_event)}, {time}"
        landed = f", landed {_days(self.landed, 'm')}" if self.landed else ""
        return f"{what}, {time}{landed}"


def _days(offset: int, base: str = "t") -> str:
    return base if offset == 0 else f"{base} {'+' if offset > 0 else '-'} {abs(offset)}d"


@dataclass(frozen=True)
class Case:
    """A stored version (None: the key is new), then an incoming one in a later batch: which one the table keeps."""

    stored: Version | None
    incoming: Version
    winner: Literal["stored", "incoming"]
    why: str


_EVENT, _NONE = Version(event=0), Version()
_TOMBSTONE = Version("delete", event=0, source="bundle.timestamp")
CASES: tuple[Case, ...] = (
    Case(_EVENT, Version(event=1), "incoming", "the later event time wins"),
    Case(_EVENT, Version(event=-1), "stored", "a late, older version never replaces a newer one"),
    Case(_EVENT, Version(event=0), "incoming", "equal: the one ingested later wins"),
    Case(_EVENT, _NONE, "stored", "a version without event time never beats one with it"),
    Case(_NONE, Version(event=-3650), "incoming", "any event time beats every landing time"),
    Case(_NONE, _NONE, "incoming", "neither has an event time: the later landing wins"),
    Case(_NONE, Version(landed=-2), "stored", "an older file landing late loses"),
    Case(_EVENT, Version(event=1, source="bundle.timestamp"), "incoming", "a Bundle's time is the event time"),
    Case(_EVENT, Version(event=1, source="bundle.timestamp", own_event=-1), "stored", "own lastUpdated first"),
    Case(_EVENT, Version("delete", event=1, source="bundle.timestamp"), "incoming", "the row becomes a tombstone"),
    Case(_EVENT, Version("delete", event=1, source="bundle.meta"), "incoming", "the row becomes a tombstone"),
    Case(_EVENT, Version("delete", event=-1, source="bundle.timestamp"), "stored", "a stale delete removes nothing"),
    Case(_EVENT, Version("delete"), "incoming", "a DELETE without a time deletes the version it finds"),
    Case(_EVENT, Version("delete", landed=-5), "incoming", "... whenever its file was written"),
    Case(_NONE, Version("delete"), "incoming", "a DELETE without a time deletes the version it finds"),
    Case(None, _TOMBSTONE, "incoming", "a delete of an unknown key still leaves a tombstone"),
    Case(_TOMBSTONE, Version(event=-1), "stored", "the delete wins over an older version arriving after it"),
    Case(_TOMBSTONE, _NONE, "stored", "a landing time never beats the delete's event time"),
    Case(_TOMBSTONE, Version(event=1), "incoming", "a newer version brings the encounter back"),
)


def readme_table() -> str:
    """The ordering table in docs/design.md, generated from CASES (each case is also run by tests/test_ordering.py)."""
    lines = ["| stored | incoming (later batch) | table keeps | why |", "|---|---|---|---|"]
    for c in CASES:
        stored = c.stored.describe() if c.stored else "nothing"
        lines.append(f"| {stored} | {c.incoming.describe()} | {c.winner} | {c.why} |")
    lines += [
        "",
        "Within one batch the same rule picks one version per encounter; equal values go to the later file"
        " modification time, then the later file URI, then the later record in the file.",
    ]
    return "\n".join(lines)
