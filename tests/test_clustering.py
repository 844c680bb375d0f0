"""Clustering on a long stream: small files merged on a schedule, and a job killed mid-clustering recovers.

After a batch that wrote, at most every `layout.cluster_every_seconds`, the job clusters bronze. A job killed
during it leaves the plan pending, and Hudi then refuses every upsert into a file group the plan holds: the stream
would fail on the first update of an encounter in those files, after every restart. Recovery finishes the plan
before the stream starts (docs/design.md, Exactly once).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import KILLED, Job, Landing, SqliteLedgerView, check_invariants, tables, wait_until
from helpers import job_config

from streaming.config import ConfigError
from streaming.lakehouse.hudi import CLUSTERING, HudiWriter, clustering_options

WAIT = 420  # seconds a job process may take on a loaded 2-core runner
# After every batch (each takes longer than a second), and every batch writes new files (no small-file growth),
# so each batch adds a file to every hospital it touches until the clustering after it merges them.
CLUSTERED = {
    "layout.cluster_every_seconds": "1",
    "layout.small_file_mb": "0",
    "max_files_per_trigger": "1",
}


def test_a_plan_takes_files_below_the_clustering_size_and_writes_files_of_it(tmp_path: Path) -> None:
    config = job_config(tmp_path, tmp_path / "landing", **{"layout.cluster_file_mb": 24})
    plan = clustering_options(config)
    assert plan["hoodie.clustering.plan.strategy.small.file.limit"] == str(24 * 2**20)
    assert plan["hoodie.clustering.plan.strategy.target.file.max.bytes"] == str(24 * 2**20)
    assert int(plan["hoodie.clustering.plan.strategy.max.num.groups"]) >= 10_000  # every hospital, not Hudi's 30


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"layout.cluster_every_seconds": -1}, "layout.cluster_every_seconds"),
        ({"layout.cluster_file_mb": 1, "layout.small_file_mb": 1}, "layout.cluster_file_mb"),
    ],
)
def test_a_clustering_setting_that_cannot_work_is_refused(tmp_path: Path, settings: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        job_config(tmp_path, tmp_path / "landing", **settings)
    # Off, the file size is not checked: nothing clusters.
    off = {**settings, "layout.cluster_every_seconds": 0}
    assert job_config(tmp_path, tmp_path / "landing", **off).layout.cluster_every_seconds == 0


def _timeline(uri: str) -> list[str]:
    return sorted(p.name for p in (Path(uri) / ".hoodie").iterdir())


@pytest.mark.job
def test_a_job_killed_while_clustering_finishes_the_plan_and_takes_updates_into_its_files(
    spark: Any, tmp_path: Path
) -> None:
    landing = Landing(tmp_path / "landing")
    warehouse = tmp_path / "warehouse"
    bronze = tables(warehouse)["bronze"]
    writer = HudiWriter(spark)
    first = landing.generated("w0", files=3, per_file=30, seed=301)

    with Job(tmp_path, landing.root, warehouse, settings=CLUSTERED) as job:
        # 1. Kill the job as soon as the first clustering is under way (its plan inflight, not completed): after the
        # second batch (after the first, each hospital has one file and nothing is planned).
        proc = job.start("killed-while-clustering", once=True)

        def clustering_inflight() -> str | None:
            names = _timeline(bronze.uri) if (Path(bronze.uri) / ".hoodie").exists() else []
            found = next((n for n in names if n.endswith(".replacecommit.inflight")), None)
            assert found or proc.alive(), f"the job ended without clustering:\n{proc.tail()}"
            return found

        inflight = wait_until("a clustering under way", clustering_inflight, WAIT, every=0.02, detail=proc.tail)
        assert proc.kill() == KILLED, proc.tail()
        plan = inflight.split(".")[0]
        assert writer.pending_clustering(bronze) == [plan], _timeline(bronze.uri)

        # 2. Newer versions of every first-wave encounter (half of them moving hospital), the restart's first batch:
        # updates into the files the pending plan holds. Without recovery Hudi refuses them (SparkRejectUpdateStrategy)
        # on every restart; the next scheduled clustering would run the plan, but no batch gets that far.
        landing.versions("w1/newer.ndjson", landing.encounters(first), shift=timedelta(days=1), status="finished")
        landing.generated("w1", files=3, per_file=30, seed=302)
        final = job.run("restart", timeout=WAIT)
        assert final.returncode == 0, final.tail()

    # The killed plan was run to completion (not only rolled back), and nothing is left pending.
    assert f"{plan}.replacecommit" in _timeline(bronze.uri)
    assert writer.pending_clustering(bronze) == []
    # Every encounter once, at its newest version and hospital; every file once; nothing inflight (harness).
    ledger = SqliteLedgerView(warehouse / "_ledger" / "ledger.sqlite3")
    check_invariants(spark, warehouse, landing, ledger, "after a kill mid-clustering")

    # Files were merged: every batch added a file to each hospital it touched, and the clustering after it merged
    # them, so each hospital ends with one; the clustering after the first batch found nothing to plan.
    snapshot = spark.read.format("hudi").load(bronze.uri)
    files = Counter(r[0] for r in snapshot.select("hospital_partition", "_hoodie_file_name").distinct().collect())
    assert set(files.values()) == {1}, f"latest files per hospital after {len(landing.files)} batches: {dict(files)}"
    clusterings = [c for c in writer.commits(bronze, newest=10_000) if c.operation == "cluster"]
    assert len(clusterings) >= 3, [c.instant for c in clusterings]

    # The JVM-free reader (hudi-rs, behind `query` and `status`) sees the same rows after the replacecommits.
    from hudi import HudiTableBuilder

    arrow = HudiTableBuilder.from_base_uri(bronze.uri).build().read()
    rs_rows = sorted((r["encounter_id"], r["status"], r["hospital_partition"]) for b in arrow for r in b.to_pylist())
    spark_rows = sorted(
        (r.encounter_id, r.status, r.hospital_partition)
        for r in snapshot.select("encounter_id", "status", "hospital_partition").collect()
    )
    assert rs_rows == spark_rows


@pytest.mark.spark
def test_a_young_table_is_not_clustered_and_a_restart_counts_from_the_last_clustering(
    spark: Any, tmp_path: Path
) -> None:
    """Due `every` seconds after the last clustering; with none yet, after the table's first commit."""
    import time

    from streaming.lakehouse.hudi import encounter_table
    from streaming.ops.status import table_figures

    config = job_config(tmp_path, tmp_path / "landing", **{"layout.small_file_mb": 0})
    spec = encounter_table(config)
    rows = "encounter_id string, precombine_ts timestamp, hospital_partition string"
    assert HudiWriter(spark).overdue(spec, CLUSTERING, 0) is None  # no table yet: nothing to cluster
    for n in range(2):  # two files in one hospital: something to cluster
        HudiWriter(spark).upsert(spec, spark.createDataFrame([(f"e{n}", datetime(2024, 1, 1), "h")], rows), {})
    first_commit = min(p.stat().st_mtime for p in (Path(spec.uri) / ".hoodie").glob("*.commit"))
    age = time.time() - first_commit
    young = HudiWriter(spark).overdue(spec, CLUSTERING, age + 3600)
    assert young is None  # a restart of a young table does not cluster
    assert HudiWriter(spark).overdue(spec, CLUSTERING, age) is not None

    writer = HudiWriter(spark)
    began = time.time()
    assert writer.cluster(spec, clustering_options(config), schedule=True)  # one plan, run
    ended = time.time()
    # `status` counts the clustering apart: the last commit is still the last data written.
    figures = table_figures(spec.name, spec.uri)
    data_commits = sorted(p.name.split(".")[0] for p in (Path(spec.uri) / ".hoodie").glob("*.commit"))
    assert (figures.commits, figures.last_commit, figures.clusterings) == (2, data_commits[-1], 1)
    assert figures.last_clustering_at is not None and figures.last_commit_at is not None
    assert began - 1 <= figures.last_clustering_at.timestamp() <= ended  # instants have milliseconds
    assert figures.last_commit_at.timestamp() < began
    assert writer.overdue(spec, CLUSTERING, 60) is None  # counted from the clustering just run...
    restarted = HudiWriter(spark).overdue(spec, CLUSTERING, age)
    assert restarted is None  # ...and, after a restart, from its replacecommit
    time.sleep(1.1)
    assert HudiWriter(spark).overdue(spec, CLUSTERING, 1) is not None


@pytest.mark.spark
def test_a_clustering_that_fails_every_time_never_stops_ingestion(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing plan is rolled back (its file groups take updates again), reported, and tried again when due."""
    from streaming.pipeline import job, upkeep

    real_options = upkeep.clustering_options
    # A real Hudi failure while the plan executes (its strategy class does not exist): the plan is left inflight,
    # as a lost executor or an S3 error would leave it.
    monkeypatch.setattr(
        upkeep,
        "clustering_options",
        lambda config: {**real_options(config), "hoodie.clustering.execution.strategy.class": "org.example.Nope"},
    )
    landing = Landing(tmp_path / "landing")
    warehouse = tmp_path / "warehouse"
    bronze = tables(warehouse)["bronze"]
    writer = HudiWriter(spark)
    first = landing.generated("w0", files=3, per_file=30, seed=311)
    config = job_config(tmp_path, landing.root, **CLUSTERED)

    failing = job.run(config, once=True, spark=spark)

    # Every batch once the table is 1 s old tried, failed, rolled back and went on; the first batch's table may be
    # younger than that when it ends (a fast machine), so it may not have tried.
    assert len(failing.batches) == 3
    assert [b.services_failed for b in failing.batches[1:]] == [("clustering",)] * 2
    assert failing.batches[0].services_failed in ((), ("clustering",))
    assert writer.pending_clustering(bronze) == [], _timeline(bronze.uri)
    assert not [n for n in _timeline(bronze.uri) if n.endswith(".replacecommit")]  # nothing clustered

    # Newer versions of every first-wave encounter go into the files the failed plans held: accepted.
    landing.versions("w1/newer.ndjson", landing.encounters(first), shift=timedelta(days=1), status="finished")
    updates = job.run(config, once=True, spark=spark)
    assert updates.files == 1 and updates.batches[0].stats.rows_written == 90

    # Once clustering works again, the next due run clusters.
    monkeypatch.setattr(upkeep, "clustering_options", real_options)
    landing.generated("w2", files=1, per_file=30, seed=312)
    healed = job.run(config, once=True, spark=spark)
    assert [(b.services, b.services_failed) for b in healed.batches] == [(("clustering",), ())]
    assert [n for n in _timeline(bronze.uri) if n.endswith(".replacecommit")]

    ledger = SqliteLedgerView(warehouse / "_ledger" / "ledger.sqlite3")
    check_invariants(spark, warehouse, landing, ledger, "after clusterings that failed")
    properties = (Path(bronze.uri) / ".hoodie" / "hoodie.properties").read_text()
    assert "hoodie.table.version=6" in properties  # the rollback did not upgrade the table


@pytest.mark.spark
def test_cleaning_runs_on_the_jobs_clock_and_never_in_a_batch_with_a_clustering(spark: Any, tmp_path: Path) -> None:
    """Hudi's own clean (inside a batch's commit, every 10th) is off: old file versions stay until the job cleans,
    after a batch's ledger commit; clean and clustering take turns, one a batch."""
    from streaming.generate import generate
    from streaming.pipeline import job

    landing = tmp_path / "landing"
    first = generate(landing, files=13, per_file=2, seed=41)
    quiet = {"layout.cluster_every_seconds": 0, "layout.clean_every_seconds": 10**6, "max_files_per_trigger": 1}
    config = job_config(tmp_path, landing, **quiet)
    bronze = Path(config.table_uri(config.tables.encounter).removeprefix("file:"))
    ran = job.run(config, once=True, spark=spark)
    assert len([b for b in ran.batches if b.files]) == 13  # 13 commits: Hudi's own rule would have cleaned
    assert not [n for n in _timeline(str(bronze)) if ".clean" in n]
    assert {b.services for b in ran.batches} == {()}
    versions = set(bronze.rglob("*.parquet"))  # each batch rewrote its hospitals' small files: old versions stay

    more = generate(tmp_path / "more", files=2, per_file=2, seed=42)  # two batches: one service each
    for path in more.files:
        path.rename(landing / path.name)
    both = {**quiet, "layout.cluster_every_seconds": 1, "layout.clean_every_seconds": 1}
    ran = job.run(job_config(tmp_path, landing, **both), once=True, spark=spark)

    services = [b.services for b in ran.batches if b.files]
    assert all(len(s) == 1 for s in services), services  # both due every batch: one of them, never both
    assert {s for (s,) in services} == {"clean", "clustering"}, services  # neither starves the other
    assert [n for n in _timeline(str(bronze)) if n.endswith(".clean")]
    assert versions - set(bronze.rglob("*.parquet")), "no old file version was cleaned"
    rows = spark.read.format("hudi").load(str(bronze)).select("encounter_id").collect()
    assert sorted(r[0] for r in rows) == sorted(first.encounter_ids + more.encounter_ids)
