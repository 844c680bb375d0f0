"""A continuous stream's bookkeeping (ingest-log row, ledger commit) overlapping the next batch: real Spark + Hudi,
in-process job runs. The fault harness (test_faults.py) kills continuous runs at random moments on top of this."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import job_config, read_table

from streaming import job
from streaming.batch import STEPS, BatchResult
from streaming.generate import generate
from streaming.hudi import HudiWriter, encounter_table
from streaming.ledger import open_ledger

pytestmark = pytest.mark.slow

BOOKKEEPING_STEPS = {"after_ingest_log", "after_ledger_commit"}


class Stream:
    """job.run(once=False) on a thread, stopped once `files` files are finished (or on its own, by an error)."""

    def __init__(self, config: Any, spark: Any, hook: Any, files: int) -> None:
        self.stop = threading.Event()
        self.failure: list[BaseException] = []
        self.results: list[BatchResult] = []

        def on_batch(result: BatchResult) -> None:
            self.results.append(result)
            if sum(len(r.files) for r in self.results) >= files:
                self.stop.set()

        def run() -> None:
            try:
                job.run(config, once=False, spark=spark, stop=self.stop, hook=hook, on_batch=on_batch)
            except BaseException as exc:  # reported by the test's assertions
                self.failure.append(exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 300) -> None:
        self.thread.join(timeout)
        self.stop.set()
        assert not self.thread.is_alive(), "the stream did not end"


def _check_tables(spark: Any, config: Any, ids: list[str], files: list[Path]) -> list[dict[str, Any]]:
    """Every encounter once, every file committed in one logged batch, no intent left open; the log rows."""
    bronze = read_table(spark, config.table_uri(config.tables.encounter))
    assert sorted(r["encounter_id"] for r in bronze) == sorted(ids)
    logged = read_table(spark, config.table_uri(config.tables.ingest_log))
    uris = sorted(f"file:{p}" for p in files)
    assert sorted(f for r in logged for f in r["files"]) == uris
    ledger = open_ledger(config)
    try:
        assert ledger.committed(uris) == set(uris)
        assert ledger.open_intents() == []
    finally:
        ledger.close()
    return logged


@pytest.mark.parametrize("overlap", [True, False], ids=["overlapped", "in-order"])
def test_the_next_batch_is_written_while_the_last_ones_bookkeeping_runs(
    spark: Any, tmp_path: Path, overlap: bool
) -> None:
    landing = tmp_path / "landing"
    generated = generate(landing, files=3, per_file=5, seed=41)
    config = job_config(tmp_path, landing, max_files_per_trigger=1, overlap_bookkeeping=overlap)
    steps: list[tuple[str, str]] = []  # (step, thread name), as the batches reached them
    second_bronze = threading.Event()
    held: list[bool] = []

    def hook(step: str) -> None:
        steps.append((step, threading.current_thread().name))
        if step == "after_hudi_commit" and [s for s, _ in steps].count(step) == 2:
            second_bronze.set()
        if overlap and step == "after_ingest_log" and not held:
            # The first batch's bookkeeping waits for the second batch's bronze commit: only an overlap gets there.
            held.append(second_bronze.wait(180))

    stream = Stream(config, spark, hook, files=3)
    stream.join()
    assert not stream.failure, stream.failure

    names = [s for s, _ in steps]
    on_bookkeeping = {s for s, thread in steps if thread.startswith("bookkeeping")}
    if overlap:
        assert held == [True], "batch 1 was not written while batch 0's bookkeeping ran"
        first_ledger_commit = names.index("after_ledger_commit")
        second_bronze_commit = [i for i, s in enumerate(names) if s == "after_hudi_commit"][1]
        assert second_bronze_commit < first_ledger_commit
        assert on_bookkeeping == BOOKKEEPING_STEPS
    else:
        assert names == list(STEPS) * 3  # each batch whole, in order, before the next one starts
        assert on_bookkeeping == set()
    assert sorted(names) == sorted(list(STEPS) * 3)  # every step of every batch, once

    logged = _check_tables(spark, config, generated.encounter_ids, generated.files)
    assert [r["file_count"] for r in logged] == [1, 1, 1]
    results = {r.batch_key: r for r in stream.results}
    assert {r["batch_key"]: r["rows_written"] for r in logged} == {k: r.stats.rows_written for k, r in results.items()}


def test_a_failed_bookkeeping_stops_the_stream_and_the_restart_finishes_its_batch(spark: Any, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    generated = generate(landing, files=1, per_file=6, seed=43)
    config = job_config(tmp_path, landing)
    failed_on: list[str] = []

    def hook(step: str) -> None:
        if step == "after_ingest_log" and not failed_on:
            failed_on.append(threading.current_thread().name)
            raise RuntimeError("bookkeeping failed (test)")

    # Nothing else lands: the stream must stop on the background error by itself, not wait for a next batch.
    stream = Stream(config, spark, hook, files=10**6)
    stream.join()
    assert [type(e).__name__ for e in stream.failure] == ["RuntimeError"], stream.failure
    assert failed_on and failed_on[0].startswith("bookkeeping")
    ledger = open_ledger(config)
    try:
        [intent] = ledger.open_intents()  # the batch is written but not committed in the ledger
    finally:
        ledger.close()

    restart = job.run(config, once=True, spark=spark)

    assert restart.recovery.finished == (intent.batch_key,)
    assert restart.files == 0  # the checkpoint has the batch: nothing read twice
    logged = _check_tables(spark, config, generated.encounter_ids, generated.files)
    assert [r["batch_key"] for r in logged] == [intent.batch_key]
    assert len(list(HudiWriter(spark).commits(encounter_table(config)))) == 1
