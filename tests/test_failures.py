"""Errors Spark wrapped (a StreamingQueryException's text) are mapped back to the project's errors."""

from __future__ import annotations

import pytest

from streaming.adapters.storage import FileReadError
from streaming.ledger import LeaseHeld, LeaseLost, LedgerMisconfigured, LedgerUnavailable
from streaming.pipeline.failures import unwrap, worker_died


def _wrapped(line: str) -> RuntimeError:
    """What foreachBatch's failure looks like on the driver: Java frames around the Python traceback."""
    return RuntimeError(
        "[FOREACH_BATCH_USER_FUNCTION_ERROR] An error occurred in the user provided function in foreach batch sink.\n"
        "=== Streaming Query ===\nIdentifier: bronze_encounter [id = 1, runId = 2]\n"
        'Traceback (most recent call last):\n  File "streaming/pipeline/batch.py", line 140, in process_batch\n'
        f"{line}\n\tat org.apache.spark.sql.execution.streaming.StreamExecution.runStream(StreamExecution.scala:1)"
    )


def test_each_known_error_is_rebuilt_with_its_message() -> None:
    cases = [
        ("streaming.ledger.LedgerUnavailable: DynamoDB ledger t: PutItem failed (Throttled)", LedgerUnavailable),
        ("streaming.ledger.LedgerMisconfigured: DynamoDB ledger t: Query failed (AccessDenied)", LedgerMisconfigured),
        ("streaming.ledger.LeaseLost: writer lease writer:s3://l/b was taken over", LeaseLost),
        ("streaming.ledger.LeaseHeld: lease 'writer:x' is held by run-2", LeaseHeld),
    ]  # fmt: skip
    for line, kind in cases:
        error = unwrap(_wrapped(line))
        assert type(error) is kind
        assert str(error) == line.partition(": ")[2]


def test_a_file_read_error_keeps_the_file_it_names() -> None:
    original = FileReadError.of("s3a://land/in/a (1).json", "PermissionError: AccessDenied")
    error = unwrap(_wrapped(f"streaming.adapters.storage.FileReadError: {original}"))
    assert isinstance(error, FileReadError)
    assert (str(error), error.uri) == (str(original), "s3a://land/in/a (1).json")


def test_known_errors_pass_through_and_unknown_ones_stay_as_they_are() -> None:
    lost = LeaseLost("x")
    assert unwrap(lost) is lost
    other = _wrapped("KeyError: 'boom'")
    assert unwrap(other) is other


@pytest.mark.parametrize(
    ("text", "died"),
    [
        ("org.apache.spark.SparkException: Python worker exited unexpectedly (crashed)", True),
        ("Lost task 0.0 in stage 11.0 (TID 12): java.net.SocketException: Socket is closed", True),
        ("ExecutorLostFailure (executor 3 exited caused by one of the running tasks)", True),
        ("Container killed by YARN for exceeding memory limits", True),
        ("org.apache.hudi.exception.HoodieUpsertException: Failed to upsert for commit time 1", False),
        ("java.net.SocketTimeoutException: Read timed out", False),
    ],
)
def test_a_dead_worker_is_told_from_other_task_failures(text: str, died: bool) -> None:
    assert worker_died(RuntimeError(text)) is died
