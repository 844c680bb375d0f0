"""Partition safety on the real write path: whatever hospital_name holds, the row lands in one folder directly
inside the table, reads back (Spark and hudi-rs) with the exact original name, and an update finds it again.

Expected folders and partitions come from helpers.expected_partition (the documented rule re-implemented) and
a re-implementation of Hudi's partition-path URL encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import HUDI_ESCAPED, PARTITION_NAMES, expected_partition, job_config, read_table

from streaming.bronze.flatten import BRONZE_COLUMNS, UNKNOWN_HOSPITAL_PARTITION, flatten
from streaming.bronze.records import RECORD_SCHEMA
from streaming.config import LayoutConfig
from streaming.lakehouse.hudi import HudiWriter, encounter_table, record_index_file_groups

pytestmark = pytest.mark.spark

BLANK = (None, "", "   ", "\u00a0")
SOURCE = "file:///landing/h.ndjson"
MODIFIED = datetime(2024, 6, 1, tzinfo=UTC)
MOVED_KEY, MOVED_TO = "h0", "東京"  # the second upsert moves this encounter to another hospital


def _folder(partition: str) -> str:
    """Hive-style folder of a partition value, URL-encoded as Hudi writes it (partitionpath.urlencode)."""
    encoded = "".join(f"%{ord(c):02X}" if c in HUDI_ESCAPED or ord(c) < 32 or ord(c) == 127 else c for c in partition)
    return f"hospital_partition={encoded}"


def _bronze(spark: Any, names: dict[str, str | None], updated: str, status: str) -> Any:
    rows = []
    for key, name in names.items():
        resource: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": key,
            "meta": {"lastUpdated": updated},
            "status": status,
        }
        if name is not None:
            resource["serviceProvider"] = {"display": name}
        text = json.dumps(resource, ensure_ascii=False)
        # A record as records.py emits it for line N of an NDJSON file; fields this test does not set are null.
        record: dict[str, Any] = dict.fromkeys(RECORD_SCHEMA.fieldNames())
        record.update(
            sourcename=SOURCE,
            position=f"line {len(rows) + 1}",
            kind="resource",
            resource_type="Encounter",
            resource_id=key,
            resource_json=text,
            file_modified=MODIFIED,
            ordinal=len(rows),
        )
        rows.append(tuple(record[f] for f in RECORD_SCHEMA.fieldNames()))
    flat = flatten(spark.createDataFrame(rows, RECORD_SCHEMA), ingested_at=datetime(2024, 6, 2, tzinfo=UTC))
    # Read, not filtered in Spark: flatten's docstring says why.
    assert [r[0] for r in flat.select("reject_reason").collect() if r[0]] == []
    return flat.select(*BRONZE_COLUMNS, "_hoodie_is_deleted")


def _folders(table: Path) -> dict[str, int]:
    """Partition folder -> number of data files; fails if anything but `.hoodie` nests or escapes."""
    top = table.resolve()
    folders: dict[str, int] = {}
    for root, dirs, files in os.walk(table):
        here = Path(root).resolve()
        if here == top:
            folders.update({d: 0 for d in dirs if d != ".hoodie"})
            assert not [f for f in files if f.endswith(".parquet")], "data file outside any partition"
            continue
        relative = here.relative_to(top)  # raises if a folder resolved outside the table
        if relative.parts[0] == ".hoodie":
            continue
        assert len(relative.parts) == 1 and not dirs, f"nested partition folder: {relative}"
        folders[relative.parts[0]] = sum(f.endswith(".parquet") for f in files)
    return folders


def _read_back(spark: Any, uri: str) -> tuple[dict[str, tuple[Any, ...]], dict[str, Any]]:
    """encounter_id -> (hospital_name, hospital_partition, partition path, status) via Spark, and id -> name via
    hudi-rs (no JVM)."""
    from hudi import HudiTableBuilder

    rows = read_table(spark, uri)
    by_spark = {
        r["encounter_id"]: (r["hospital_name"], r["hospital_partition"], r["_hoodie_partition_path"], r["status"])
        for r in rows
    }
    assert len(by_spark) == len(rows), "an encounter id appears twice"
    batches = HudiTableBuilder.from_base_uri(uri).build().read()
    pairs = [
        pair
        for batch in batches
        for pair in zip(
            batch.column("encounter_id").to_pylist(), batch.column("hospital_name").to_pylist(), strict=True
        )
    ]
    by_rs = dict(pairs)
    assert len(by_rs) == len(pairs), "hudi-rs reads an encounter id twice"
    return by_spark, by_rs


# The first batch into a table bulk-inserts (batch.py); both writes must name the folders the same way.
@pytest.mark.parametrize("first_write", ["upsert", "bulk_insert"])
def test_every_hospital_name_lands_in_one_safe_partition_and_updates(
    spark: Any, tmp_path: Path, first_write: str
) -> None:
    config = job_config(tmp_path, tmp_path / "landing")
    spec = encounter_table(config)
    table = Path(spec.uri.removeprefix("file:"))
    writer = HudiWriter(spark)
    names = {f"h{i}": name for i, name in enumerate(PARTITION_NAMES)}
    assert names[MOVED_KEY] is not None and expected_partition(MOVED_TO) != expected_partition(names[MOVED_KEY])

    write = getattr(writer, first_write)
    write(spec, _bronze(spark, names, "2024-01-01T00:00:00Z", "in-progress"), {"_test": "insert"})
    assert next(writer.commits(spec)).operation == first_write
    # The record index: one file group per million expected rows (the default, 2M: two), whatever Hudi's own
    # estimate (10 for a new table), by either first write.
    assert len(_record_index_file_groups(spec.uri)) == record_index_file_groups(LayoutConfig().expected_rows) == 2

    expected_folders = {_folder(expected_partition(n)) for n in names.values()}
    folders = _folders(table)
    assert set(folders) == expected_folders
    assert all(count >= 1 for count in folders.values())
    assert all(len(f.encode()) <= 255 for f in folders)
    by_spark, by_rs = _read_back(spark, spec.uri)
    assert by_spark == {
        k: (n, expected_partition(n), _folder(expected_partition(n)), "in-progress") for k, n in names.items()
    }
    assert by_rs == names
    blank_keys = [k for k, n in names.items() if n in BLANK]
    assert len(blank_keys) == len(BLANK)
    assert {by_spark[k][1] for k in blank_keys} == {UNKNOWN_HOSPITAL_PARTITION}

    # An update of every key (and one move to another hospital): the global index must find each row wherever
    # its partition is, so nothing is duplicated and nothing is left behind.
    moved = {**names, MOVED_KEY: MOVED_TO}
    writer.upsert(spec, _bronze(spark, moved, "2024-02-01T00:00:00Z", "finished"), {"_test": "update"})

    by_spark, by_rs = _read_back(spark, spec.uri)
    assert by_spark == {
        k: (n, expected_partition(n), _folder(expected_partition(n)), "finished") for k, n in moved.items()
    }
    assert by_rs == moved
    assert set(_folders(table)) <= expected_folders | {_folder(expected_partition(MOVED_TO))}
    newest = next(writer.commits(spec))
    assert newest.extra.get("_test") == "update"
    assert (newest.inserts, newest.updates) == (1, len(names) - 1)  # only the moved row is new to its partition
    assert len(_record_index_file_groups(spec.uri)) == 2  # an upsert keeps the count the index was built with


def test_the_global_index_reconciles_with_the_clusters_parallelism(spark: Any, tmp_path: Path) -> None:
    """Hudi's default is a fixed 60 tasks per shuffle: 290 of a small batch's 435 tasks on a 2-core laptop."""
    options = HudiWriter(spark).options(encounter_table(job_config(tmp_path, tmp_path / "landing")))
    assert options["hoodie.global.index.reconcile.parallelism"] == str(spark.sparkContext.defaultParallelism) == "2"


def _record_index_file_groups(table_uri: str) -> set[str]:
    """The record index's file group ids, from its files (`record-index-0000-0_<instant>.hfile`, `.log.N_...`)."""
    folder = Path(table_uri.removeprefix("file:")) / ".hoodie" / "metadata" / "record_index"
    return {p.name.lstrip(".").split("_")[0] for p in folder.iterdir() if p.name.lstrip(".").startswith("record-index")}


def test_the_record_index_is_sized_by_expected_rows_when_built_and_only_then(spark: Any, tmp_path: Path) -> None:
    """One file group per million `layout.expected_rows` (3M: three), fixed when the index is built: a later
    setting changes nothing for the table until its metadata table is deleted and rebuilt (docs/design.md)."""
    built = encounter_table(job_config(tmp_path, tmp_path / "landing", **{"layout.expected_rows": 3_000_000}))
    HudiWriter(spark).bulk_insert(built, _bronze(spark, {"a": "A"}, "2024-01-01T00:00:00Z", "finished"), {})
    assert len(_record_index_file_groups(built.uri)) == 3
    resized = encounter_table(job_config(tmp_path, tmp_path / "landing", **{"layout.expected_rows": 4_000_000}))
    HudiWriter(spark).upsert(resized, _bronze(spark, {"b": "B"}, "2024-01-02T00:00:00Z", "finished"), {})
    assert len(_record_index_file_groups(built.uri)) == 3
    assert sorted(r["encounter_id"] for r in read_table(spark, built.uri)) == ["a", "b"]

    # Resizing, as docs/design.md says: the metadata table deleted, the next write rebuilds it with the new count.
    alias = "resize_" + hashlib.sha256(built.uri.encode()).hexdigest()[:12]
    spark.sql(f"CREATE TABLE IF NOT EXISTS {alias} USING hudi LOCATION '{built.uri}'")
    spark.sql(f"CALL delete_metadata_table(table => '{alias}')").collect()
    HudiWriter(spark).upsert(resized, _bronze(spark, {"c": "C"}, "2024-01-03T00:00:00Z", "finished"), {})
    assert len(_record_index_file_groups(built.uri)) == 4
    # The rebuilt index knows every key: an update of each, one moving hospital, leaves one row per key.
    moved = {"a": "A", "b": "B2", "c": "C"}
    HudiWriter(spark).upsert(resized, _bronze(spark, moved, "2024-01-04T00:00:00Z", "finished"), {})
    assert {r["encounter_id"]: r["hospital_name"] for r in read_table(spark, built.uri)} == moved


def test_a_table_of_the_previous_index_moves_rows_once_after_the_upgrade(spark: Any, tmp_path: Path) -> None:
    """Tables written with GLOBAL_SIMPLE: the first write with the record index builds it from their files."""
    spec = encounter_table(job_config(tmp_path, tmp_path / "landing"))
    previous = {k: v for k, v in spec.options.items() if ".record.index." not in k}
    previous |= {"hoodie.index.type": "GLOBAL_SIMPLE", "hoodie.simple.index.update.partition.path": "true"}
    writer = HudiWriter(spark)
    names = {f"h{i}": name for i, name in enumerate(PARTITION_NAMES)}
    writer.upsert(replace(spec, options=previous), _bronze(spark, names, "2024-01-01T00:00:00Z", "in-progress"), {})

    moved = {**names, MOVED_KEY: MOVED_TO}
    writer.upsert(spec, _bronze(spark, moved, "2024-02-01T00:00:00Z", "finished"), {})

    by_spark, by_rs = _read_back(spark, spec.uri)
    assert by_spark == {
        k: (n, expected_partition(n), _folder(expected_partition(n)), "finished") for k, n in moved.items()
    }
    assert by_rs == moved
    assert len(_record_index_file_groups(spec.uri)) == record_index_file_groups(LayoutConfig().expected_rows) == 2


def _file_groups(folder: Path) -> set[str]:
    """File group ids of a partition folder: its data files are `<file id>_<write token>_<instant>.parquet`."""
    return {p.name.split("_")[0] for p in folder.glob("*.parquet")}


def test_a_hospitals_newest_file_takes_new_rows_only_below_the_small_file_limit(spark: Any, tmp_path: Path) -> None:
    """Copy-on-write rewrites the newest file to add rows; `layout.small_file_mb` bounds how large it may grow: a
    file of a few hundred KiB takes b below the default limit (one file group, rewritten), and at 0 c starts a new
    file group."""
    writer = HudiWriter(spark)
    folder = tmp_path / "warehouse" / "bronze_encounter" / _folder("A")
    default = encounter_table(job_config(tmp_path, tmp_path / "landing"))
    writer.upsert(default, _bronze(spark, {"a": "A"}, "2024-01-01T00:00:00Z", "finished"), {})
    first = _file_groups(folder)
    writer.upsert(default, _bronze(spark, {"b": "A"}, "2024-01-01T00:00:00Z", "finished"), {})
    below_limit = _file_groups(folder)
    never = encounter_table(job_config(tmp_path, tmp_path / "landing", **{"layout.small_file_mb": 0}))
    writer.upsert(never, _bronze(spark, {"c": "A"}, "2024-01-01T00:00:00Z", "finished"), {})
    at_zero = _file_groups(folder)

    assert len(first) == 1 and below_limit == first
    assert len(at_zero) == 2 and first < at_zero
    by_spark, by_rs = _read_back(spark, default.uri)
    assert set(by_spark) == set(by_rs) == {"a", "b", "c"}
