"""Per-batch metrics in CloudWatch: one thin adapter over put_metric_data that never fails a batch.

After every batch: Files, RowsIn, RowsWritten, RowsDeleted, RowsRejected, BatchSeconds and LagSeconds, each with
the dimension Table=<bronze table name>. FilesWaiting and OldestWaitingSeconds come from a callable that lists
the source, so it is asked at most once per `metrics.waiting_every_seconds`, not per batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from botocore.config import Config

from streaming import aws
from streaming.config import ConfigError, JobConfig

if TYPE_CHECKING:
    from streaming.batch import BatchResult

log = logging.getLogger(__name__)

# A metric is worth a short wait, not a stalled batch: a few quick tries, then the batch goes on without it.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)


class Waiting(Protocol):
    """Files in the source the ledger has not committed yet (streaming.status.waiting_files returns one)."""

    @property
    def count(self) -> int: ...

    @property
    def oldest_age_seconds(self) -> float | None: ...


Metric = tuple[str, float, str]  # name, value, CloudWatch unit


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


def waiting_metrics(waiting: Waiting) -> list[Metric]:
    """The backlog: how many files wait and how long the oldest has (0 when none waits)."""
    return [
        ("FilesWaiting", waiting.count, "Count"),
        ("OldestWaitingSeconds", waiting.oldest_age_seconds or 0.0, "Seconds"),
    ]


class CloudWatchMetrics:
    """A batch observer for job.run: publishes each batch's metrics; errors are logged once, never raised."""

    def __init__(
        self,
        namespace: str,
        table: str,
        region: str = "",
        *,
        waiting: Callable[[], Waiting] | None = None,
        waiting_every_seconds: float = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespace, self.table, self.region = namespace, table, region
        self.waiting, self.waiting_every_seconds, self.clock = waiting, waiting_every_seconds, clock
        self._waiting_due: float | None = None  # clock value from which `waiting` may be asked again
        self._failing: set[str] = set()  # what is failing now: warned about once per streak

    def __call__(self, result: BatchResult) -> None:
        self.publish(batch_metrics(result) + self._backlog(), result.ended_at or datetime.now(UTC))

    def publish(self, metrics: list[Metric], at: datetime) -> bool:
        """Send `metrics` stamped `at`; False (and one warning per failure streak) when CloudWatch refused."""
        data = [
            {
                "MetricName": name,
                "Dimensions": [{"Name": "Table", "Value": self.table}],
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
            self._failed("cloudwatch", f"CloudWatch metrics not published ({_describe(exc)}); the job goes on")
            return False
        self._recovered("cloudwatch", "CloudWatch metrics published again")
        return True

    def _backlog(self) -> list[Metric]:
        """FilesWaiting/OldestWaitingSeconds when due (it lists the source), else nothing."""
        if self.waiting is None:
            return []
        now = self.clock()
        if self._waiting_due is not None and now < self._waiting_due:
            return []
        self._waiting_due = now + self.waiting_every_seconds  # a failing listing is not retried every batch either
        try:
            waiting = self.waiting()
        except Exception as exc:
            self._failed("waiting", f"files waiting could not be counted ({_describe(exc)}); metric skipped")
            return []
        self._recovered("waiting", "files waiting counted again")
        return waiting_metrics(waiting)

    def _failed(self, what: str, message: str) -> None:
        if what not in self._failing:
            log.warning(message)
        self._failing.add(what)

    def _recovered(self, what: str, message: str) -> None:
        if what in self._failing:
            log.warning(message)
        self._failing.discard(what)


def _describe(exc: BaseException) -> str:
    """The error's class and AWS error code: enough to act on, never a payload."""
    response = getattr(exc, "response", None)  # botocore's ClientError carries the service's error code
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return f"{type(exc).__name__}: {code}" if code else type(exc).__name__


def _files_waiting(config: JobConfig) -> Any:
    from streaming import status  # lists the source against the ledger; imported only when metrics are on

    return status.waiting_files(config)


def publisher(config: JobConfig, waiting: Callable[[], Waiting] | None = None) -> CloudWatchMetrics | None:
    """The observer `metrics.backend` asks for, or None ("none"); `waiting` defaults to status.waiting_files."""
    settings = config.metrics
    if settings.backend == "none":
        return None
    if settings.backend != "cloudwatch":
        raise ConfigError(f"unknown metrics.backend {settings.backend!r} (cloudwatch or none)")
    if settings.waiting_every_seconds < 0:
        raise ConfigError("metrics.waiting_every_seconds must be >= 0")
    return CloudWatchMetrics(
        settings.namespace,
        config.tables.encounter,
        settings.region,
        waiting=waiting or (lambda: _files_waiting(config)),
        waiting_every_seconds=settings.waiting_every_seconds,
    )
