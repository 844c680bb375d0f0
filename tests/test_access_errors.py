"""A listed file that exists but cannot be read fails the batch, is never committed, and is taken once readable."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import read_table

from streaming import cli
from streaming import config as conf
from streaming.adapters import aws
from streaming.adapters.storage import FileReadError
from streaming.generate import generate
from streaming.ledger import open_ledger
from streaming.pipeline import job, metrics

pytestmark = pytest.mark.spark


def _land(s3_bucket: str, tmp_path: Path) -> tuple[conf.JobConfig, list[str], list[str], str]:
    """Two good files and one in Glacier (InvalidObjectState: a 403 until restored) on the moto S3 server."""
    generated = generate(tmp_path / "gen", files=3, per_file=4, seed=77)
    s3 = aws.client("s3")
    uris = []
    for i, path in enumerate(generated.files):
        extra = {"StorageClass": "GLACIER"} if i == 1 else {}
        s3.put_object(Bucket=s3_bucket, Key=f"landing/{path.name}", Body=path.read_bytes(), **extra)
        uris.append(f"s3a://{s3_bucket}/landing/{path.name}")
    config = conf.load(
        conf.env_file("local"),
        {
            "source": f"s3a://{s3_bucket}/landing/",
            "warehouse": str(tmp_path / "warehouse"),
            "trigger_interval": "1 second",
        },
    )
    return config, uris, generated.encounter_ids, f"landing/{generated.files[1].name}"


def _committed(config: conf.JobConfig, uris: list[str]) -> set[str]:
    ledger = open_ledger(config)
    try:
        return ledger.committed(uris)
    finally:
        ledger.close()


def test_once_fails_naming_the_file_and_commits_nothing(
    spark: Any, s3_bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, uris, _, _ = _land(s3_bucket, tmp_path)

    with pytest.raises(FileReadError) as failed:
        job.run(config, once=True, spark=spark)

    assert failed.value.uri == uris[1]
    assert "InvalidObjectState" in str(failed.value)
    assert _committed(config, uris) == set()  # the whole batch waits: nothing is skipped, nothing half-done
    assert not (Path(config.table_uri(config.tables.encounter)) / ".hoodie" / "hoodie.properties").exists()

    # The CLI names the file and exits 5 (a JVM is already up: the command reuses it).
    monkeypatch.setattr("streaming.lakehouse.session.build_spark", lambda *_a, **_k: spark)
    code = cli.main(["run", "--once", "--source", config.source, "--warehouse", config.warehouse])
    assert code == cli.EXIT_FILE
    assert uris[1] in capsys.readouterr().err


def test_continuous_mode_waits_for_access_and_then_takes_every_row(
    spark: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, uris, ids, glacier_key = _land(s3_bucket, tmp_path)
    monkeypatch.setattr(job, "FILE_RETRY_FIRST_SECONDS", 1.0)
    monkeypatch.setattr(job, "FILE_RETRY_MAX_SECONDS", 2.0)
    stop = threading.Event()
    failure: list[BaseException] = []

    def stream() -> None:
        try:
            job.run(config, once=False, spark=spark, stop=stop)
        except BaseException as exc:  # reported by the assertions below
            failure.append(exc)

    runner = threading.Thread(target=stream, daemon=True)
    runner.start()
    try:
        time.sleep(20)  # several failed attempts at the batch
        assert not failure, failure
        assert _committed(config, uris) == set()
        aws.client("s3").restore_object(Bucket=s3_bucket, Key=glacier_key, RestoreRequest={"Days": 1})
        deadline = time.monotonic() + 180
        while _committed(config, uris) != set(uris) and time.monotonic() < deadline and not failure:
            time.sleep(1)
        assert _committed(config, uris) == set(uris), failure
    finally:
        stop.set()
        runner.join(timeout=120)
    assert not failure, failure
    rows = read_table(spark, config.table_uri(config.tables.encounter))
    assert sorted(r["encounter_id"] for r in rows) == sorted(ids)


def test_a_stream_blocked_on_an_unreadable_file_keeps_saying_so_and_the_stall_alarm_fires(
    spark: Any, s3_bucket: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Running but blocked: nothing commits, yet the heartbeat, the backlog and Blocked reach CloudWatch, and the
    template's stall alarm, evaluated over what was published, crosses its threshold."""
    from alarm_math import expression_values
    from template_render import render

    config, uris, _, _ = _land(s3_bucket, tmp_path)
    config = conf.load(
        conf.env_file("local"),
        {
            "source": config.source,
            "warehouse": config.warehouse,
            "trigger_interval": "1 second",
            "metrics.backend": "cloudwatch",
            "metrics.namespace": "BronzeEncounter",
            "tables.encounter": unique_name.replace("-", "_"),  # this test's own Table dimension
            "metrics.heartbeat_seconds": 1,
            "metrics.waiting_every_seconds": 0,
        },
    )
    monkeypatch.setattr(job, "FILE_RETRY_FIRST_SECONDS", 2.0)
    beats: list[metrics.Heartbeat] = []
    made = metrics.heartbeat
    monkeypatch.setattr(metrics, "heartbeat", lambda *a, **k: beats.append(made(*a, **k)) or beats[-1])
    stop = threading.Event()
    failure: list[BaseException] = []

    def stream() -> None:
        try:
            job.run(config, once=False, spark=spark, stop=stop)
        except BaseException as exc:  # reported by the assertions below
            failure.append(exc)

    runner = threading.Thread(target=stream, daemon=True)
    started = datetime.now(UTC)
    runner.start()
    try:
        deadline = time.monotonic() + 240  # a loaded machine starts the stream slowly
        while not (beats and beats[0].blocked) and time.monotonic() < deadline and not failure:
            time.sleep(0.5)
        assert beats and beats[0].blocked == "file_unreadable", failure
        time.sleep(15)  # blocked: the batch fails on the Glacier object, again and again
        assert not failure, failure
        assert _committed(config, uris) == set()
    finally:
        stop.set()
        runner.join(timeout=120)

    table = config.tables.encounter
    cloudwatch = aws.client("cloudwatch")

    def points(metric: str, stat: str, **dimensions: str) -> list[float]:
        found = cloudwatch.get_metric_statistics(
            Namespace="BronzeEncounter",
            MetricName=metric,
            Dimensions=[{"Name": "Table", "Value": table}, *({"Name": k, "Value": v} for k, v in dimensions.items())],
            StartTime=started - timedelta(minutes=1),
            EndTime=datetime.now(UTC) + timedelta(minutes=1),
            Period=60,
            Statistics=[stat],
        )["Datapoints"]
        return [p[stat] for p in sorted(found, key=lambda p: p["Timestamp"])]

    assert sum(points("Heartbeat", "SampleCount")) >= 10  # a beat a second while blocked
    assert max(points("FilesWaiting", "Maximum")) == len(uris)  # every file waits: the batch commits nothing
    assert max(points("OldestWaitingSeconds", "Maximum")) > 10
    assert max(points("Blocked", "Maximum", Reason="file_unreadable")) == 1
    assert max(points("Blocked", "Maximum", Reason="ledger_unavailable")) == 0
    assert points("Files", "Sum") == []  # nothing committed

    # The stall alarm's expression over what the job published: files wait, nothing committed, so it breaches.
    alarm = render(JobName=table).props("StalledAlarm")
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            query["MetricStat"]["Metric"]["Dimensions"] = [{"Name": "Table", "Value": table}]
    published = {"FilesWaiting": points("FilesWaiting", "Minimum"), "Files": points("Files", "Sum")}
    assert expression_values(alarm, published)[-1] >= float(alarm["Threshold"])
