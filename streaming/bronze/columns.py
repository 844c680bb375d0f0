"""What the three tables hold, as data: each table's description and each column's meaning.

The catalog registers these as the table description and the column comments (`catalog_defs`), and docs/reference.md's
table definitions show them. Bronze's meanings are the mapping table's (`mapping.RULES`, `PIPELINE_COLUMNS`); the
ingest log's schema is defined here with its meanings, one line per column; the quarantine's columns are projected
by `flatten.quarantine_rows` and mean what is written here. Only the mapping is imported: the catalog, the Hudi
table specs and the batch all read this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from streaming.fhir.mapping import PIPELINE_COLUMNS, RULES


@dataclass(frozen=True)
class TableDoc:
    """What a table is for, and what each of its columns (data columns and partition keys) means."""

    description: str
    meanings: Mapping[str, str]


# Hudi adds these to every table, in this order, before the data columns (its sync registers them the same way).
HUDI_META: Mapping[str, str] = MappingProxyType(
    {
        "_hoodie_commit_time": "Hudi: instant of the commit that wrote this version of the row",
        "_hoodie_commit_seqno": "Hudi: the row's sequence number within that commit",
        "_hoodie_record_key": "Hudi: the record key (the table's key columns)",
        "_hoodie_partition_path": "Hudi: the partition folder the row lives in (empty when unpartitioned)",
        "_hoodie_file_name": "Hudi: the data file that holds the row",
    }
)

ENCOUNTER = TableDoc(
    "FHIR Encounters (R4 and R5) flattened to one row per encounter id, its newest version by event time;"
    " a deleted encounter is a tombstone (is_deleted). Hudi copy-on-write, partitioned by hospital.",
    MappingProxyType(
        {
            **{rule.column: rule.meaning for rule in RULES},
            **PIPELINE_COLUMNS,
            "_hoodie_is_deleted": (
                "Hudi's delete marker, always false: a delete is a tombstone row (is_deleted); kept because tables"
                " written before tombstones have it"
            ),
        }
    ),
)

# The ingest log, one line per column: name, Spark type, meaning. Its schema and its comments are both made from it.
_INGEST_LOG: tuple[tuple[str, str, str], ...] = (
    ("batch_key", "string", "the record key: `<run_id>-<batch_id>`, also in the bronze commit's metadata"),
    ("run_id", "string", "the job run that wrote the batch (UTC start time and a random suffix)"),
    ("batch_id", "long", "Spark's micro-batch id within that run's checkpoint"),
    ("files", "array<string>", "URIs of the files the batch ingested"),
    ("file_count", "int", "number of files the batch ingested"),
    ("files_already_committed", "int", "files listed for the batch that the ledger had committed: not read again"),
    ("rows_in", "long", "records read from the files: resources, deletes, skipped and rejected"),
    ("rows_written", "long", "Encounter versions written to bronze (versions kept older are in rows_stale)"),
    ("rows_deleted", "long", "encounters the batch turned into tombstones: live before, deleted after"),
    ("rows_rejected", "long", "records and files quarantined (see bronze_encounter_quarantine)"),
    ("rows_skipped", "long", "resources of other types (a Patient, a Bundle's Observation): counted, not written"),
    ("started_at", "timestamp", "when the batch started (UTC)"),
    ("ended_at", "timestamp", "when the batch wrote this row (UTC); Hudi's ordering value"),
    ("commit_instant", "string", "the bronze commit's instant; null when the batch wrote nothing to bronze"),
    ("delete_requests", "long", "valid Bundle DELETE entries read, whether or not they removed anything"),
    (
        "rows_stale",
        "long",
        "versions the table kept a newer version over (older ones arriving late); null when not known (a batch"
        " finished by recovery)",
    ),
    (
        "lag_seconds",
        "double",
        "from the oldest ingested file's modification time to the batch's end; null when recovery wrote the row",
    ),
)
INGEST_LOG_SCHEMA = ", ".join(f"{name} {spark_type}" for name, spark_type, _ in _INGEST_LOG)

INGEST_LOG = TableDoc(
    "One row per micro-batch that ingested files: its files, row counts, times and bronze commit.",
    MappingProxyType({name: meaning for name, _, meaning in _INGEST_LOG}),
)

QUARANTINE = TableDoc(
    "One row per record or file that could not become a bronze row: where it was, why, and a bounded slice of it.",
    MappingProxyType(
        {
            "quarantine_id": (
                "the record key: SHA-256 of file and position, so a replayed batch replaces its rows, never adds more"
            ),
            "sourcename": PIPELINE_COLUMNS["sourcename"],
            "source_position": "where in that file: `line N`, `entry N`, `line N entry M` or `file`",
            "reason": "reason code (docs/reference.md, Reason codes)",
            "message": "what was wrong, naming the element, never its value",
            "raw_slice": "the start of the raw text (fhir.raw_slice_chars characters)",
            "batch_key": "the batch that quarantined it (see the ingest log)",
            "batch_id": "Spark's micro-batch id of that batch",
            "quarantined_at": "when that batch started (UTC)",
        }
    ),
)
