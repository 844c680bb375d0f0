"""End to end on real Spark + Hudi: the Synthea samples land once, re-runs change nothing, new files land."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from helpers import copy_samples, job_config, read_table

from streaming.lakehouse.hudi import HudiWriter, encounter_table, ingest_log_table
from streaming.pipeline import job

pytestmark = pytest.mark.spark


def _ndjson_ids(path: Path) -> set[str]:
    return {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}


def _file_uri(path: Path) -> str:
    return f"file:{path}"


def test_synthea_lands_once_and_reruns_change_nothing(spark: Any, samples: Path, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    copied = copy_samples(samples, landing)
    config = job_config(tmp_path, landing)
    expected_ids = _ndjson_ids(samples / "encounters.ndjson")
    assert len(expected_ids) == 3927

    first = job.run(config, once=True, spark=spark)
    assert first.files == 4
    rows = read_table(spark, config.table_uri("bronze_encounter"))
    ids = [r["encounter_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 3927  # one row per encounter id, the bundle copies merged in
    assert set(ids) == expected_ids
    assert all(r["hospital_name"] for r in rows)
    assert {r["sourcename"] for r in rows} <= {_file_uri(p) for p in copied}

    # JVM-free readers see the same table (table version 6).
    from hudi import HudiTableBuilder

    table = HudiTableBuilder.from_base_uri(config.table_uri("bronze_encounter")).build()
    batches = table.read()
    rs_ids = [i for b in batches for i in b.column("encounter_id").to_pylist()]
    assert sorted(rs_ids) == sorted(ids)

    # No Hudi bloom filter in an upserted file's footer (no index reads it): a one-row ingest-log file stays small.
    (log_file,) = Path(config.table_uri("bronze_encounter_ingest_log")).rglob("*.parquet")
    assert not [key for key in pq.read_metadata(log_file).metadata or {} if b"bloom" in key]
    assert log_file.stat().st_size <= 50_000

    log_rows = read_table(spark, config.table_uri("bronze_encounter_ingest_log"))
    assert len(log_rows) == 1
    assert sorted(log_rows[0]["files"]) == sorted(_file_uri(p) for p in copied)
    assert log_rows[0]["file_count"] == 4
    assert log_rows[0]["rows_written"] == 3927 + 106  # every Encounter read; duplicates merge in Hudi
    assert log_rows[0]["rows_rejected"] == 0
    assert log_rows[0]["rows_skipped"] > 0  # the bundles' other resources, counted not kept

    writer = HudiWriter(spark)
    commits_before = [c.instant for c in writer.commits(encounter_table(config))]
    second = job.run(config, once=True, spark=spark)
    assert second.files == 0
    assert [c.instant for c in writer.commits(encounter_table(config))] == commits_before
    assert len(read_table(spark, config.table_uri("bronze_encounter_ingest_log"))) == 1
    assert sorted(r["encounter_id"] for r in read_table(spark, config.table_uri("bronze_encounter"))) == sorted(ids)


def test_new_file_ingests_exactly_that_file(spark: Any, tmp_path: Path) -> None:
    from streaming.generate import generate

    landing = tmp_path / "landing"
    first_set = generate(landing, files=3, per_file=20, seed=11)
    config = job_config(tmp_path, landing)
    job.run(config, once=True, spark=spark)

    # The first batch finds no commit: it bulk-inserts (no key lookup), one file per hospital folder.
    table = Path(config.table_uri("bronze_encounter").removeprefix("file:"))
    files_per_hospital = Counter(p.parent.name for p in table.glob("hospital_partition=*/*.parquet"))
    assert set(files_per_hospital.values()) == {1}
    assert len(files_per_hospital) == len(first_set.per_hospital)

    extra = generate(tmp_path / "extra", files=1, per_file=15, seed=12)
    new_file = landing / extra.files[0].name
    shutil.move(extra.files[0], new_file)
    summary = job.run(config, once=True, spark=spark)

    assert [b.files for b in summary.batches if b.files] == [(_file_uri(new_file),)]
    rows = read_table(spark, config.table_uri("bronze_encounter"))
    assert sorted(r["encounter_id"] for r in rows) == sorted(first_set.encounter_ids + extra.encounter_ids)
    log_rows = sorted(read_table(spark, config.table_uri("bronze_encounter_ingest_log")), key=lambda r: r["started_at"])
    assert [r["files"] for r in log_rows][-1] == [_file_uri(new_file)]
    assert [r["rows_written"] for r in log_rows] == [len(first_set.encounter_ids), 15]
    operations = [c.operation for c in reversed(list(HudiWriter(spark).commits(encounter_table(config))))]
    assert operations == ["bulk_insert", "upsert"]


def test_checkpoint_loss_is_survived_by_the_ledger(spark: Any, tmp_path: Path) -> None:
    from streaming.generate import generate

    landing = tmp_path / "landing"
    generated = generate(landing, files=4, per_file=10, seed=5)
    config = job_config(tmp_path, landing)
    job.run(config, once=True, spark=spark)
    writer = HudiWriter(spark)
    commits = [c.instant for c in writer.commits(encounter_table(config))]

    shutil.rmtree(config.checkpoint_uri)
    again = job.run(config, once=True, spark=spark)

    assert again.files == 0
    assert sum(b.files_already_committed for b in again.batches) == len(generated.files)
    assert [c.instant for c in writer.commits(encounter_table(config))] == commits
    assert len(list(writer.commits(ingest_log_table(config)))) == 1


def test_files_landing_late_with_old_modification_times_are_all_ingested(spark: Any, tmp_path: Path) -> None:
    """A copy that keeps times (cp -p, rsync -a, tar) lands files 6-30 days older than one already seen."""
    import os
    import time

    from streaming.generate import generate

    landing = tmp_path / "landing"
    first = generate(landing, files=1, per_file=5, seed=31)
    config = job_config(tmp_path, landing)
    job.run(config, once=True, spark=spark)

    late = generate(tmp_path / "copied", files=25, per_file=2, seed=32)
    now = time.time()
    for days, path in zip(range(6, 31), late.files, strict=True):
        target = landing / f"late-{path.name}"
        shutil.move(path, target)
        os.utime(target, (now - days * 86400, now - days * 86400))
    summary = job.run(config, once=True, spark=spark)

    assert summary.files == 25
    rows = read_table(spark, config.table_uri("bronze_encounter"))
    assert sorted(r["encounter_id"] for r in rows) == sorted(first.encounter_ids + late.encounter_ids)


def test_each_batch_sees_only_its_own_files_across_source_log_compaction(spark: Any, tmp_path: Path) -> None:
    """The source log compacts every 10th batch (every 3rd here); the compaction batch must not look up the whole
    history again, nor the batches after it."""
    from streaming.generate import generate

    landing = tmp_path / "landing"
    generated = generate(landing, files=5, per_file=1, seed=33)
    config = job_config(tmp_path, landing, max_files_per_trigger=1)
    interval = "spark.sql.streaming.fileSource.log.compactInterval"  # read when a new checkpoint's log starts
    spark.conf.set(interval, "3")  # batch 2 compacts: 5 batches cover it and two after, not 12 for batch 9
    try:
        summary = job.run(config, once=True, spark=spark)
    finally:
        spark.conf.unset(interval)

    assert (Path(config.checkpoint_uri.removeprefix("file:")) / "sources" / "0" / "2.compact").exists()
    assert [len(b.files) for b in summary.batches] == [1] * 5
    assert [b.files_already_committed for b in summary.batches] == [0] * 5
    log_rows = read_table(spark, config.table_uri("bronze_encounter_ingest_log"))
    assert sorted((r["batch_id"], r["file_count"], r["files_already_committed"]) for r in log_rows) == [
        (i, 1, 0) for i in range(5)
    ]
    assert sorted(f for r in log_rows for f in r["files"]) == sorted(_file_uri(p) for p in generated.files)


def test_a_compaction_batch_reads_only_its_own_entries_from_the_source_log(spark: Any, tmp_path: Path) -> None:
    """Batch 9's entries come from the compacted log without the history (and an older batch's still can)."""
    from benchmarks.sourcelog import write_log
    from streaming.lakehouse.source_log import batch_entries

    log_dir = write_log(tmp_path, entries=90, per_last_batch=3)
    log = spark._jvm.org.apache.spark.sql.execution.streaming.FileStreamSourceLog(1, spark._jsparkSession, str(log_dir))

    def paths(batch_id: int) -> list[str]:
        return sorted(e.path() for e in batch_entries(log, batch_id))

    assert paths(9) == [f"file:///landing/b9/f{i:07d}.ndjson" for i in range(3)]
    assert paths(4) == [f"file:///landing/b4/f{i:07d}.ndjson" for i in range(10)]


def test_the_ingest_log_is_written_every_n_batches_and_when_the_job_stops(spark: Any, tmp_path: Path) -> None:
    """Log rows wait in the ledger and are written together: every 2nd batch here, the rest when the job stops."""
    from streaming.generate import generate
    from streaming.ledger import open_ledger

    landing = tmp_path / "landing"
    generated = generate(landing, files=5, per_file=4, seed=21)
    config = job_config(
        tmp_path,
        landing,
        max_files_per_trigger=1,
        **{"ingest_log.every_batches": 2, "ingest_log.every_seconds": 0},
    )
    waiting: list[int] = []  # rows waiting in the ledger after each batch
    log_commits: list[int] = []  # ingest-log commits after each batch

    def after_batch(_: Any) -> None:
        ledger = open_ledger(config)
        try:
            waiting.append(len(ledger.unlogged()))
        finally:
            ledger.close()
        log_commits.append(_commit_count(spark, ingest_log_table(config)))

    summary = job.run(config, once=True, spark=spark, on_batch=after_batch)

    assert [b.log_rows for b in summary.batches] == [0, 2, 0, 2, 0]
    assert waiting == [1, 0, 1, 0, 1] and log_commits == [0, 1, 1, 2, 2]
    # The stop wrote the fifth: one row per batch, each batch's own files and counts, in 3 commits.
    ledger = open_ledger(config)
    try:
        assert ledger.unlogged() == [] and ledger.open_intents() == []
    finally:
        ledger.close()
    rows = sorted(read_table(spark, config.table_uri("bronze_encounter_ingest_log")), key=lambda r: r["batch_id"])
    assert [(r["batch_key"], r["files"], r["rows_written"]) for r in rows] == [
        (b.batch_key, list(b.files), b.stats.rows_written) for b in summary.batches
    ]
    assert sum(r["rows_written"] for r in rows) == len(generated.encounter_ids)
    assert _commit_count(spark, ingest_log_table(config)) == 3


def _commit_count(spark: Any, spec: Any) -> int:
    writer = HudiWriter(spark)
    return len(list(writer.commits(spec))) if writer.has_commits(spec) else 0


def test_an_intent_an_earlier_release_left_open_after_its_log_row_is_only_committed(spark: Any, tmp_path: Path) -> None:
    """That release wrote the log row before the ledger commit: a kill between them left the row and the intent."""
    from datetime import UTC, datetime

    from streaming.bronze.columns import INGEST_LOG_SCHEMA
    from streaming.generate import generate
    from streaming.lakehouse.hudi import BATCH_KEY
    from streaming.ledger import BatchIntent, open_ledger

    landing = tmp_path / "landing"
    (path,) = generate(landing, files=1, per_file=3, seed=31).files
    config = job_config(tmp_path, landing)
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    intent = BatchIntent("old-000000", "old", 0, (_file_uri(path),), started)
    ledger = open_ledger(config)
    ledger.begin(intent)
    ledger.close()
    row = {
        "batch_key": intent.batch_key, "run_id": "old", "batch_id": 0, "files": list(intent.files), "file_count": 1,
        "files_already_committed": 0, "rows_in": 3, "rows_written": 0, "rows_deleted": 0, "rows_rejected": 3,
        "rows_skipped": 0, "started_at": started, "ended_at": started, "commit_instant": None,
        "delete_requests": 0, "rows_stale": 0, "lag_seconds": None,
    }  # fmt: skip
    log = ingest_log_table(config)
    HudiWriter(spark).upsert(log, spark.createDataFrame([row], INGEST_LOG_SCHEMA), {BATCH_KEY: intent.batch_key})

    summary = job.run(config, once=True, spark=spark)

    assert (summary.recovery.finished, summary.recovery.abandoned) == (("old-000000",), ())
    assert [b.files for b in summary.batches if b.files] == []  # its file counts as committed: not read again
    rows = read_table(spark, config.table_uri(config.tables.ingest_log))
    assert [(r["batch_key"], r["rows_written"], r["rows_rejected"]) for r in rows] == [("old-000000", 0, 3)]
    ledger = open_ledger(config)
    try:
        assert ledger.committed([_file_uri(path)]) == {_file_uri(path)}
        assert ledger.open_intents() == [] and ledger.unlogged() == []
    finally:
        ledger.close()
