"""Cleaning on a long stream: old file versions are still removed, but not by a clean after every commit.

Copy-on-write leaves the replaced version of a file behind on nearly every batch. Hudi's default tries a clean after
each commit once 10 are retained; the tables here clean every 10th commit instead (docs/performance.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import job_config, read_table

from streaming.bronze.columns import INGEST_LOG_SCHEMA
from streaming.lakehouse.hudi import HudiWriter, ingest_log_table
from streaming.pipeline.deps import BatchStats

pytestmark = pytest.mark.spark

COMMITS = 13  # past the 10 retained: every 10th commit cleans once by now; Hudi's default, more often


def _log_row(spark: Any, n: int) -> Any:
    at = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=n)
    row = {"batch_key": f"run-{n:06d}", "run_id": "run", "batch_id": n, "files": [f"f{n}"], "file_count": 1}
    row.update(files_already_committed=0, **BatchStats().__dict__, started_at=at, ended_at=at, commit_instant=None)
    return spark.createDataFrame([row], INGEST_LOG_SCHEMA)


def test_a_stream_of_commits_cleans_old_versions_every_tenth_commit(spark: Any, tmp_path: Path) -> None:
    spec = ingest_log_table(job_config(tmp_path, tmp_path / "landing"))
    writer = HudiWriter(spark)
    for n in range(COMMITS):
        writer.upsert(spec, _log_row(spark, n), {})  # one small file, rewritten by every commit

    timeline = Path(spec.uri) / ".hoodie"
    cleans = sorted(p.name for p in timeline.iterdir() if p.name.endswith(".clean"))
    versions = list(Path(spec.uri).glob("*.parquet"))
    assert len(cleans) == 1, cleans  # a clean tried after every commit (Hudi's default) left 2 here
    # ... and that one clean still removed what the 10 retained commits no longer need: 13 versions were written.
    assert 0 < len(versions) < COMMITS
    assert sorted(r["batch_key"] for r in read_table(spark, spec.uri)) == [f"run-{n:06d}" for n in range(COMMITS)]
