"""Files that hold data: no Hudi bloom filter in the footers of the files the job writes, and bronze files
no larger than the clustering's target size, a backfill's bulk insert included."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from helpers import copy_samples, job_config, read_table

from streaming.generate import generate
from streaming.pipeline import job

pytestmark = pytest.mark.spark

# The footer key Hudi keeps its bloom filter under (and the filter's type beside it).
BLOOM_KEYS = (b"org.apache.hudi.bloomfilter", b"hoodie_bloom_filter_type_code")
TABLES = ("bronze_encounter", "bronze_encounter_ingest_log", "bronze_encounter_quarantine")


def _data_files(table_uri: str) -> list[Path]:
    """Every Parquet data file of a table (not the metadata table's), old versions too."""
    return sorted(p for p in Path(table_uri).rglob("*.parquet") if ".hoodie" not in p.parts)


def _bloom_keys(path: Path) -> list[bytes]:
    return [k for k in (pq.read_metadata(path).metadata or {}) if k in BLOOM_KEYS]


def _bloom_bytes(path: Path) -> int:
    return len((pq.read_metadata(path).metadata or {}).get(BLOOM_KEYS[0], b""))


def test_no_file_the_job_writes_carries_a_bloom_filter(spark: Any, samples: Path, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    copy_samples(samples, landing, bundles=False)
    (landing / "bad.ndjson").write_text("{not json\n")  # one quarantined record: the quarantine table is written
    config = job_config(tmp_path, landing)
    job.run(config, once=True, spark=spark)  # a backfill: bronze is bulk-inserted (Hudi's row writer)
    backfilled = {t: _data_files(config.table_uri(t)) for t in TABLES}
    assert all(backfilled.values()), {t: len(f) for t, f in backfilled.items()}

    # Then an update of one encounter and a delete of another: upserts into the files the backfill wrote.
    first, second, *_ = (json.loads(line) for line in (samples / "encounters.ndjson").read_text().splitlines())
    first["meta"] = {"lastUpdated": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}
    first["status"] = "cancelled"
    delete = {"request": {"method": "DELETE", "url": f"Encounter/{second['id']}"}}
    (landing / "update.ndjson").write_text(json.dumps(first) + "\n")
    (landing / "delete.json").write_text(json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [delete]}))
    job.run(config, once=True, spark=spark)

    rows = {r["encounter_id"]: r for r in read_table(spark, config.table_uri("bronze_encounter"))}
    assert (rows[first["id"]]["status"], rows[first["id"]]["is_deleted"]) == ("cancelled", False)
    assert rows[second["id"]]["is_deleted"] is True
    assert len(read_table(spark, config.table_uri("bronze_encounter_quarantine"))) == 1

    written = {t: _data_files(config.table_uri(t)) for t in TABLES}
    assert {t: set(written[t]) > set(backfilled[t]) for t in TABLES} == dict.fromkeys(TABLES[:2], True) | {
        "bronze_encounter_quarantine": False  # the second run quarantined nothing
    }
    # Files an upsert wrote have none; the backfill's (Hudi 1.0.2's row writer always writes one) one sized to nothing.
    upserted = [f for t in TABLES for f in set(written[t]) - set(backfilled[t])]
    assert {f.name: _bloom_keys(f) for f in upserted if _bloom_keys(f)} == {}
    assert {f.name: n for f in backfilled["bronze_encounter"] if (n := _bloom_bytes(f)) > 32} == {}
    assert {f.name: _bloom_keys(f) for t in TABLES[1:] for f in backfilled[t] if _bloom_keys(f)} == {}
    # The one-row ingest-log file is data, not a footer (it was 429 KiB with Hudi's default filter).
    assert max(f.stat().st_size for f in written["bronze_encounter_ingest_log"]) <= 50_000


def test_a_backfill_writes_no_file_above_the_clustering_size(spark: Any, tmp_path: Path) -> None:
    """A hospital holding more than `layout.cluster_file_mb` starts as several files, each at most that size."""
    landing = tmp_path / "landing"
    generated = generate(landing, files=2, per_file=20_000, seed=7)
    cap = 2**20
    config = job_config(tmp_path, landing, **{"layout.cluster_file_mb": 1, "layout.small_file_mb": 0})
    job.run(config, once=True, spark=spark)

    table = config.table_uri("bronze_encounter")
    rows = read_table(spark, table)
    assert sorted(r["encounter_id"] for r in rows) == sorted(generated.encounter_ids)
    files = _data_files(table)
    per_hospital = Counter(f.parent.name for f in files)
    sizes = {f.name: f.stat().st_size for f in files}
    assert max(sizes.values()) <= cap, sizes
    # The cap split the hospitals: the largest hospital's rows would fill more than one capped file.
    assert max(per_hospital.values()) > 1, per_hospital
    assert {f.parent.name for f in files} == {r["_hoodie_partition_path"] for r in rows}
