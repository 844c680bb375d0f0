"""Metrics in CloudWatch: one thin adapter over put_metric_data that never fails a batch.

After every batch: Files, RowsIn, RowsWritten, RowsDeleted, RowsRejected, RowsStale, BatchSeconds, ServicesFailed
and LagSeconds; per view besides encounter (dimension View) ViewRowsIn, ViewRowsWritten, ViewRowsRejected and
ViewSeconds. From a timer that runs whatever the batches do (`Heartbeat`, every `metrics.heartbeat_seconds`):
Heartbeat, Blocked (one per reason, 1 while the stream waits out that reason) and, at most every
`metrics.waiting_every_seconds` since it lists the source, FilesWaiting and OldestWaitingSeconds. A stream that is
up but blocked, or gone, is told by these: the template's alarms watch them. Every metric has the dimension
Table=<bronze table name>; Blocked also Reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from botocore.config import Config

from streaming.adapters import aws
from streaming.config import ConfigError, JobConfig
from streaming.ledger import Ledger
from streaming.ops.backlog import Backlog, backlog

if TYPE_CHECKING:
    from streaming.pipeline.batch import BatchResult

log = logging.getLogger(__name__)

# A metric is worth a short wait, not a stalled batch: a few quick tries, then the batch goes on without it.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)


class Waiting(Protocol):
    """Files in the source the ledger has not committed yet (streaming.ops.status.waiting_files returns one)."""

    @property
    def count(self) -> int: ...

    @property
    def oldest_age_seconds(self) -> float | None: ...


Metric = tuple[str, float, str]  # name, value, CloudWatch unit

# Every metric the job publishes, and what it says (the deploy template's alarms and dashboard watch these).
METRICS: dict[str, str] = {
    "Files": "files a batch committed",
    "RowsIn": "records a batch read",
    "RowsWritten": "versions a batch wrote (not those the table kept a newer one over)",
    "RowsDeleted": "encounters a batch turned into tombstones",
    "RowsRejected": "records or files a batch quarantined",
    "RowsStale": "versions the table kept a newer one over (older versions arriving late)",
    "BatchSeconds": "a batch's wall time, listing to ledger commit",
    "ServicesFailed": "table services (clustering, cleaning) that failed after a batch; ingestion went on",
    "LagSeconds": "from the oldest ingested file's landing to its batch's end",
    "ViewRowsIn": "per view besides encounter (dimension View): resource versions of its type a batch read",
    "ViewRowsWritten": "per view: rows a batch wrote into its table",
    "ViewRowsRejected": "per view: records of its type a batch quarantined",
    "ViewSeconds": "per view: its step's wall time in a batch",
    "Heartbeat": "1 every metrics.heartbeat_seconds while the job runs, whatever its batches do",
    "Blocked": "1 while the stream waits out the reason in the Reason dimension, else 0",
    "FilesWaiting": "landed files the ledger has not committed",
    "OldestWaitingSeconds": "age of the oldest of them",
    "FilesOverwritten": "committed files rewritten in place since (reingest takes them)",
    "FilesIgnored": "files the source never lists for their names (`_` or `.` first)",
    "FilesListed": "files the source lists at every trigger",
    "FilesListedCommitted": "of those, already committed: listed again until archived (source_archive)",
}
# Why a running stream may be waiting instead of ingesting (the Reason dimension of Blocked).
BLOCKED_REASONS = ("file_unreadable", "ledger_unavailable")


def batch_metrics(result: BatchResult) -> list[Metric]:
    """The numbers one batch publishes; LagSeconds only when the batch ingested files."""
    stats = result.stats
    metrics: list[Metric] = [
        ("Files", len(result.files), "Count"),
        ("RowsIn", stats.rows_in, "Count"),
        ("RowsWritten", stats.rows_written, "Count"),
        ("RowsDeleted", stats.rows_deleted, "Count"),
        ("RowsRejected", stats.rows_rejected, "Count"),
        ("RowsStale", stats.rows_stale or 0, "Count"),
        ("BatchSeconds", result.seconds, "Seconds"),
        # Table services (clustering) that failed after the batch: ingestion went on, the table's layout did not.
        ("ServicesFailed", len(result.services_failed), "Count"),
    ]
    lag = result.lag_seconds
    if lag is not None:
        metrics.append(("LagSeconds", max(0.0, lag), "Seconds"))  # a clock skew must not publish a negative lag
    return metrics


def view_metrics(result: BatchResult) -> dict[str, list[Metric]]:
    """The numbers each view besides encounter publishes for a batch (dimension View=<its name>)."""
    return {
        name: [
            ("ViewRowsIn", stats.versions, "Count"),
            ("ViewRowsWritten", stats.rows_written, "Count"),
            ("ViewRowsRejected", stats.rejected, "Count"),
            ("ViewSeconds", result.timings.get(f"view_{name}", 0.0), "Seconds"),
        ]
        for name, stats in result.views.items()
    }


def waiting_metrics(waiting: Waiting) -> list[Metric]:
    """The backlog: how many files wait and how long the oldest has (0 when none waits), and, from a full listing
    (status.backlog), files overwritten in place, ignored for their names, listed per trigger and already committed."""
    metrics: list[Metric] = [
        ("FilesWaiting", waiting.count, "Count"),
        ("OldestWaitingSeconds", waiting.oldest_age_seconds or 0.0, "Seconds"),
    ]
    if isinstance(waiting, Backlog):
        metrics += [
            ("FilesOverwritten", waiting.overwritten, "Count"),
            ("FilesIgnored", waiting.ignored, "Count"),
            ("FilesListed", waiting.listed, "Count"),
            ("FilesListedCommitted", waiting.listed_committed, "Count"),
        ]
    return metrics


class CloudWatchMetrics:
    """A batch observer for job.run: publishes each batch's metrics; errors are logged once, never raised."""

    def __init__(self, namespace: str, table: str, region: str = "") -> None:
        self.namespace, self.table, self.region = namespace, table, region
        self._failing: set[str] = set()  # what is failing now: warned about once per streak
        self._lock = threading.Lock()  # the batch observer and the heartbeat publish from different threads

    def __call__(self, result: BatchResult) -> None:
        at = result.ended_at or datetime.now(UTC)
        self.publish(batch_metrics(result), at)
        for view, metrics in view_metrics(result).items():
            self.publish(metrics, at, {"View": view})

    def publish(self, metrics: list[Metric], at: datetime, dimensions: Mapping[str, str] | None = None) -> bool:
        """Send `metrics` stamped `at` (with `dimensions` beside Table); False, and one warning per failure streak,
        when CloudWatch refused."""
        extra = [{"Name": k, "Value": v} for k, v in (dimensions or {}).items()]
        data = [
            {
                "MetricName": name,
                "Dimensions": [{"Name": "Table", "Value": self.table}, *extra],
                "Timestamp": at,
                "Value": float(value),
                "Unit": unit,
            }
            for name, value, unit in metrics
        ]
        try:
            aws.client("cloudwatch", self.region, CLIENT_CONFIG).put_metric_data(
                Namespace=self.namespace, MetricData=data
            )
        except Exception as exc:  # metrics are best effort: the batch is already committed
            self.failed("cloudwatch", f"CloudWatch metrics not published ({_describe(exc)}); the job goes on")
            return False
        self.recovered("cloudwatch", "CloudWatch metrics published again")
        return True

    def failed(self, what: str, message: str) -> None:
        with self._lock:
            if what not in self._failing:
                log.warning(message)
            self._failing.add(what)

    def recovered(self, what: str, message: str) -> None:
        with self._lock:
            if what in self._failing:
                log.warning(message)
            self._failing.discard(what)


class Heartbeat:
    """What a running job publishes whatever its batches do: alive, blocked or not, and how much waits.

    A thread ticks every `every` seconds; `blocked` is set by the job while it waits out an unreadable file or a
    ledger outage and cleared by its next committed batch (it is also a batch observer). The backlog lists the
    source, so it is asked at most every `backlog_every` seconds; while the ledger is out it cannot be counted.
    """

    def __init__(
        self,
        metrics: CloudWatchMetrics,
        *,
        every: float,
        backlog: Callable[[], Waiting] | None = None,
        backlog_every: float = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics, self.every, self.backlog, self.backlog_every, self.clock = (
            metrics,
            every,
            backlog,
            backlog_every,
            clock,
        )
        self.blocked: str | None = None
        self._backlog_due: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, result: BatchResult) -> None:
        if result.batch_key is not None:  # a committed batch: whatever blocked the stream is past
            self.blocked = None

    def start(self) -> None:
        # The first tick before the stream starts: a job blocked from its first moment says so at once, and the
        # backlog it lists is the one the run found.
        self.beat()
        self._thread = threading.Thread(target=self._run, name="bronze-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.every + 10)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.beat()

    def beat(self) -> None:
        """One tick: Heartbeat, Blocked per reason, and the backlog when due."""
        now = datetime.now(UTC)
        self.metrics.publish([("Heartbeat", 1, "Count"), *self._backlog()], now)
        for reason in BLOCKED_REASONS:
            self.metrics.publish([("Blocked", float(self.blocked == reason), "Count")], now, {"Reason": reason})

    def _backlog(self) -> list[Metric]:
        if self.backlog is None or self.blocked == "ledger_unavailable":
            return []
        now = self.clock()
        if self._backlog_due is not None and now < self._backlog_due:
            return []
        self._backlog_due = now + self.backlog_every  # a failing listing is not retried every tick either
        try:
            waiting = self.backlog()
        except Exception as exc:
            self.metrics.failed("waiting", f"files waiting could not be counted ({_describe(exc)}); metric skipped")
            return []
        self.metrics.recovered("waiting", "files waiting counted again")
        return waiting_metrics(waiting)


def _describe(exc: BaseException) -> str:
    """The error's class and AWS error code: enough to act on, never a payload."""
    response = getattr(exc, "response", None)  # botocore's ClientError carries the service's error code
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return f"{type(exc).__name__}: {code}" if code else type(exc).__name__


def publisher(config: JobConfig) -> CloudWatchMetrics | None:
    """The batch observer `metrics.backend` asks for, or None ("none")."""
    settings = config.metrics
    if settings.backend == "none":
        return None
    if settings.backend != "cloudwatch":
        raise ConfigError(f"unknown metrics.backend {settings.backend!r} (cloudwatch or none)")
    return CloudWatchMetrics(settings.namespace, config.tables.encounter, settings.region)


def heartbeat(config: JobConfig, metrics: CloudWatchMetrics, ledger: Ledger | None = None) -> Heartbeat:
    """The timer for `metrics` with the job's settings; its backlog lists the source against `ledger` (the job's)."""
    settings = config.metrics
    return Heartbeat(
        metrics,
        every=settings.heartbeat_seconds,
        backlog=lambda: backlog(config, ledger),
        backlog_every=settings.waiting_every_seconds,
    )
