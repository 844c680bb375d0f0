"""CloudWatch metrics against the moto server: what a batch sends comes back, backlog throttled, outages harmless."""

from __future__ import annotations

import dataclasses
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import job_config

from streaming import config as conf
from streaming.adapters import aws
from streaming.pipeline import job
from streaming.pipeline.batch import BatchResult
from streaming.pipeline.deps import BatchStats
from streaming.pipeline.metrics import CloudWatchMetrics, Heartbeat, heartbeat, publisher

TABLE = "bronze_encounter"


@dataclass(frozen=True)
class Backlog:
    count: int
    oldest_age_seconds: float | None


def _result(files: int, stats: BatchStats, *, seconds: float, lag: float | None, batch_id: int) -> BatchResult:
    ended = datetime.now(UTC)
    return BatchResult(
        batch_key=f"run-{batch_id:06d}" if files else None,  # a batch that took no file commits nothing
        files=tuple(f"file:/landing/{batch_id}-{n}.ndjson" for n in range(files)),
        files_already_committed=0,
        stats=stats,
        batch_id=batch_id,
        seconds=seconds,
        oldest_modified=None if lag is None else ended - timedelta(seconds=lag),
        ended_at=ended,
    )


def _statistics(
    namespace: str, name: str, table: str = TABLE, dimensions: dict[str, str] | None = None
) -> dict[str, float]:
    """Sum, SampleCount, Maximum of one metric over the last hour and the next (one period)."""
    now = datetime.now(UTC)
    extra = [{"Name": k, "Value": v} for k, v in (dimensions or {}).items()]
    points = aws.client("cloudwatch").get_metric_statistics(
        Namespace=namespace,
        MetricName=name,
        Dimensions=[{"Name": "Table", "Value": table}, *extra],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(hours=1),
        Period=7200,
        Statistics=["Sum", "SampleCount", "Maximum"],
    )["Datapoints"]
    if not points:
        return {"Sum": 0.0, "SampleCount": 0.0, "Maximum": 0.0}
    assert len(points) == 1, points
    return {k: float(points[0][k]) for k in ("Sum", "SampleCount", "Maximum")}


def test_two_batches_come_back_from_cloudwatch(aws_env: str, unique_name: str) -> None:
    metrics = CloudWatchMetrics(unique_name, TABLE)
    first = _result(3, BatchStats(40, 35, 2, 3, 1), seconds=4.5, lag=30.0, batch_id=0)
    second = _result(2, BatchStats(12, 10, 0, 2, 0), seconds=1.5, lag=8.0, batch_id=1)

    metrics(first)
    metrics(second)

    listed = aws.client("cloudwatch").list_metrics(Namespace=unique_name)["Metrics"]
    assert {m["MetricName"] for m in listed} == {
        "Files",
        "RowsIn",
        "RowsWritten",
        "RowsDeleted",
        "RowsRejected",
        "RowsStale",
        "BatchSeconds",
        "ServicesFailed",
        "LagSeconds",
    }
    assert all(m["Dimensions"] == [{"Name": "Table", "Value": TABLE}] for m in listed)
    expected_sums = {
        "Files": 3 + 2,
        "RowsIn": 40 + 12,
        "RowsWritten": 35 + 10,
        "RowsDeleted": 2 + 0,
        "RowsRejected": 3 + 2,
        "BatchSeconds": 4.5 + 1.5,
        "ServicesFailed": 0,
        "RowsStale": 0,
    }
    for name, total in expected_sums.items():
        stats = _statistics(unique_name, name)
        assert (stats["Sum"], stats["SampleCount"]) == (pytest.approx(total), 2), name
    lag = _statistics(unique_name, "LagSeconds")
    assert lag["SampleCount"] == 2
    assert lag["Maximum"] == pytest.approx(30.0, abs=1.0)  # ended_at - oldest_modified, as the batch measured it
    assert _statistics(unique_name, "Files", table="another_table")["SampleCount"] == 0  # the dimension filters


def test_each_view_publishes_its_rows_and_its_step_under_its_name(aws_env: str, unique_name: str) -> None:
    from streaming.pipeline.views import ViewStats

    metrics = CloudWatchMetrics(unique_name, TABLE)
    for n, (patients, conditions) in enumerate([(ViewStats(5, 0, 1, 5), ViewStats(9, 1, 0, 10)), (ViewStats(2), None)]):
        result = _result(1, BatchStats(3, 3), seconds=2.0, lag=1.0, batch_id=n)
        views = {"patient": patients, **({"condition": conditions} if conditions else {})}
        timings = {"view_patient": 0.5 + n, "view_condition": 0.25}
        metrics(dataclasses.replace(result, views=views, timings=timings))

    patient, condition = {"View": "patient"}, {"View": "condition"}
    assert _statistics(unique_name, "ViewRowsIn", dimensions=patient)["Sum"] == 7
    assert _statistics(unique_name, "ViewRowsWritten", dimensions=patient)["Sum"] == 5
    assert _statistics(unique_name, "ViewRowsRejected", dimensions=patient)["Sum"] == 1
    assert _statistics(unique_name, "ViewSeconds", dimensions=patient) == {"Sum": 2.0, "SampleCount": 2, "Maximum": 1.5}
    assert _statistics(unique_name, "ViewRowsWritten", dimensions=condition) == {
        "Sum": 10.0,
        "SampleCount": 1,
        "Maximum": 10.0,
    }
    assert _statistics(unique_name, "RowsWritten")["Sum"] == 6  # the batch's own, without a View dimension


def test_batch_without_new_files_sends_no_lag(aws_env: str, unique_name: str) -> None:
    metrics = CloudWatchMetrics(unique_name, TABLE)
    metrics(_result(0, BatchStats(), seconds=0.2, lag=None, batch_id=4))
    assert _statistics(unique_name, "Files") == {"Sum": 0.0, "SampleCount": 1.0, "Maximum": 0.0}
    assert _statistics(unique_name, "LagSeconds")["SampleCount"] == 0
    assert _statistics(unique_name, "FilesWaiting")["SampleCount"] == 0  # the backlog is the heartbeat's


def test_the_heartbeat_asks_the_backlog_at_most_once_per_interval(aws_env: str, unique_name: str) -> None:
    now = [0.0]
    calls: list[float] = []

    def waiting() -> Backlog:
        calls.append(now[0])
        return Backlog(count=len(calls), oldest_age_seconds=None)

    beat = Heartbeat(
        CloudWatchMetrics(unique_name, TABLE), every=60, backlog=waiting, backlog_every=300, clock=lambda: now[0]
    )
    for moment in (0.0, 10.0, 299.0, 300.0, 420.0, 650.0):
        now[0] = moment
        beat.beat()

    assert calls == [0.0, 300.0, 650.0]
    assert _statistics(unique_name, "Heartbeat")["SampleCount"] == 6
    waiting_sent = _statistics(unique_name, "FilesWaiting")
    assert (waiting_sent["SampleCount"], waiting_sent["Sum"]) == (3, 1 + 2 + 3)
    assert _statistics(unique_name, "OldestWaitingSeconds")["Sum"] == 0  # nothing waiting has no age


def test_failing_backlog_is_warned_once_and_the_heartbeat_still_publishes(
    aws_env: str, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    def waiting() -> Backlog:
        raise OSError("listing failed")

    beat = Heartbeat(CloudWatchMetrics(unique_name, TABLE), every=60, backlog=waiting, backlog_every=0)
    with caplog.at_level(logging.WARNING, logger="streaming.pipeline.metrics"):
        for _ in range(3):
            beat.beat()
    assert [r.getMessage() for r in caplog.records].count(
        "files waiting could not be counted (OSError); metric skipped"
    ) == 1
    assert _statistics(unique_name, "Heartbeat")["SampleCount"] == 3


def test_blocked_is_one_for_the_reason_the_stream_waits_for_and_a_commit_clears_it(
    aws_env: str, unique_name: str
) -> None:
    beat = Heartbeat(CloudWatchMetrics(unique_name, TABLE), every=60, backlog=lambda: Backlog(4, 30.0))
    beat.blocked = "file_unreadable"
    beat.beat()
    beat(_result(0, BatchStats(), seconds=0.1, lag=None, batch_id=1))  # nothing committed: still blocked
    beat.beat()
    assert beat.blocked == "file_unreadable"
    beat(_result(2, BatchStats(5, 5, 0, 0, 0), seconds=0.1, lag=1.0, batch_id=2))  # the file was read at last
    beat.beat()

    def blocked(reason: str) -> dict[str, float]:
        return _statistics(unique_name, "Blocked", dimensions={"Reason": reason})

    assert (blocked("file_unreadable")["Sum"], blocked("file_unreadable")["SampleCount"]) == (2, 3)
    assert (blocked("ledger_unavailable")["Sum"], blocked("ledger_unavailable")["SampleCount"]) == (0, 3)
    # While the ledger is out the backlog cannot be counted: no FilesWaiting then, the heartbeat still goes.
    beat.blocked = "ledger_unavailable"
    beat.backlog_every = 0
    beat.beat()
    assert _statistics(unique_name, "FilesWaiting")["SampleCount"] == 1  # the first beat's only
    assert _statistics(unique_name, "Heartbeat")["SampleCount"] == 4


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on exit: nothing listens there


def test_unreachable_cloudwatch_never_raises_and_warns_once(
    aws_env: str, unique_name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    metrics = CloudWatchMetrics(unique_name, TABLE)
    batch = _result(1, BatchStats(5, 5, 0, 0, 0), seconds=0.3, lag=2.0, batch_id=0)
    with caplog.at_level(logging.WARNING, logger="streaming.pipeline.metrics"):
        metrics(batch)
        metrics(batch)
    warnings = [r.getMessage() for r in caplog.records if r.name == "streaming.pipeline.metrics"]
    assert len(warnings) == 1 and warnings[0].startswith("CloudWatch metrics not published (EndpointConnectionError")

    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)  # CloudWatch is back: publishing resumes, and says so once
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="streaming.pipeline.metrics"):
        metrics(batch)
    assert [r.getMessage() for r in caplog.records] == ["CloudWatch metrics published again"]
    assert _statistics(unique_name, "RowsIn")["Sum"] == 5


def test_backend_setting(tmp_path: Path) -> None:
    assert publisher(conf.load(overrides={"warehouse": str(tmp_path)})) is None  # default "none"
    glue = conf.load(conf.env_file("glue"))
    cloudwatch = publisher(glue)
    assert isinstance(cloudwatch, CloudWatchMetrics)
    assert (cloudwatch.namespace, cloudwatch.table) == ("BronzeEncounter", "bronze_encounter")
    beat = heartbeat(glue, cloudwatch)
    assert (beat.every, beat.backlog_every) == (glue.metrics.heartbeat_seconds, glue.metrics.waiting_every_seconds)
    with pytest.raises(conf.ConfigError, match=r"unknown metrics\.backend 'statsd'"):
        publisher(conf.load(overrides={"metrics.backend": "statsd"}))


@pytest.mark.spark
def test_job_run_publishes_rows_written(spark: Any, aws_env: str, unique_name: str, tmp_path: Path) -> None:
    from streaming.generate import generate

    generated = generate(tmp_path / "landing", files=3, per_file=7, seed=21)
    config = job_config(
        tmp_path, tmp_path / "landing", **{"metrics.backend": "cloudwatch", "metrics.namespace": unique_name}
    )
    seen: list[BatchResult] = []
    summary = job.run(config, once=True, spark=spark, on_batch=seen.append)

    assert summary.rows_written == len(generated.encounter_ids) == 21
    assert seen == summary.batches  # the observer saw every batch, in order
    written = _statistics(unique_name, "RowsWritten")
    assert (written["Sum"], written["SampleCount"]) == (21, len(summary.batches))
    assert _statistics(unique_name, "Files")["Sum"] == len(generated.files)
    # The heartbeat's first tick, before the stream starts, lists the backlog the run found: the three files; the
    # next listing is minutes away (metrics.waiting_every_seconds).
    waiting = _statistics(unique_name, "FilesWaiting")
    assert (waiting["SampleCount"], waiting["Sum"]) == (1, len(generated.files))


def test_a_full_listing_publishes_overwritten_ignored_and_listed_files(aws_env: str, unique_name: str) -> None:
    from streaming.ops.backlog import Backlog as Listing

    listing = Listing(
        at=datetime.now(UTC),
        listed=12,
        listed_committed=9,
        waiting=3,
        oldest_waiting_seconds=40.0,
        overwritten=2,
        ignored=1,
    )
    Heartbeat(CloudWatchMetrics(unique_name, TABLE), every=60, backlog=lambda: listing, backlog_every=0).beat()
    sent = {
        name: _statistics(unique_name, name)["Sum"]
        for name in ("FilesWaiting", "OldestWaitingSeconds", "FilesOverwritten", "FilesIgnored", "FilesListed")
    }
    assert sent == {
        "FilesWaiting": 3,
        "OldestWaitingSeconds": 40,
        "FilesOverwritten": 2,
        "FilesIgnored": 1,
        "FilesListed": 12,
    }
    assert _statistics(unique_name, "FilesListedCommitted")["Sum"] == 9
