"""Which ledger failures are outages (wait and retry) and which are settings (stop with exit code 2)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

from streaming import cli
from streaming.ledger import BatchIntent, Fence, LeaseLost, LedgerMisconfigured, LedgerUnavailable
from streaming.ledger.dynamodb import DynamoDbLedger, ledger_error
from streaming.ledger.dynamodb_errors import cancellation_error


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetItem")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ProvisionedThroughputExceededException", 400),
        ("ThrottlingException", 400),
        ("RequestLimitExceeded", 400),
        ("InternalServerError", 500),
        ("ServiceUnavailable", 503),
        ("SomethingNew", 502),  # any 5xx is the service's own failure
    ],
)
def test_throttling_and_server_errors_are_outages(code: str, status: int) -> None:
    error = ledger_error("GetItem", "ledger-t", _client_error(code, status))
    assert type(error) is LedgerUnavailable
    assert str(error) == f"DynamoDB ledger ledger-t: GetItem failed ({code})"


@pytest.mark.parametrize(
    "code", ["ValidationException", "AccessDeniedException", "ResourceNotFoundException", "UnrecognizedClientException"]
)
def test_errors_retrying_cannot_fix_are_configuration_errors(code: str) -> None:
    error = ledger_error("PutItem intent", "ledger-t", _client_error(code, 400))
    assert type(error) is LedgerMisconfigured
    assert str(error).startswith(f"DynamoDB ledger ledger-t: PutItem intent failed ({code}); retrying cannot fix")


def test_connection_errors_are_outages_and_missing_settings_are_not() -> None:
    assert type(ledger_error("Query", "t", EndpointConnectionError(endpoint_url="http://x"))) is LedgerUnavailable
    assert type(ledger_error("Query", "t", NoRegionError())) is LedgerMisconfigured
    assert type(ledger_error("Query", "t", NoCredentialsError())) is LedgerMisconfigured


def _no_region(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "aws-config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))  # no region from a developer's ~/.aws/config either
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))


def test_no_region_is_one_clear_configuration_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_region(monkeypatch, tmp_path)
    with pytest.raises(LedgerMisconfigured, match=r"NoRegionError: set ledger.region \(or AWS_REGION\)"):
        DynamoDbLedger(f"ledger-{tmp_path.name}")


def test_run_with_a_dynamodb_ledger_and_no_region_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_region(monkeypatch, tmp_path)
    (tmp_path / "in").mkdir()
    argv = ["run", "--once", "--source", str(tmp_path / "in"), "--warehouse", str(tmp_path / "wh")]
    code = cli.main([*argv, "--ledger-backend", "dynamodb"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "set ledger.region (or AWS_REGION)" in err


class _Raw:
    """The body of a canned HTTP response, in the shape botocore reads it from urllib3."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, *_: object, **__: object) -> Iterator[bytes]:
        yield self.body


def _cancelling_client(reasons: list[str]) -> Any:
    """A real DynamoDB client whose TransactWriteItems gets DynamoDB's HTTP 400 answer cancelling with `reasons`.

    The answer goes through botocore's own parsing, so the error has the shape the ledger meets in AWS.
    """
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",  # never reached: the answer is given before sending
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}),
    )
    body = {
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "CancellationReasons": [{"Code": r} if r == "None" else {"Code": r, "Message": "..."} for r in reasons],
        "Message": f"Transaction cancelled, please refer cancellation reasons for specific reasons [{', '.join(reasons)}]",  # noqa: E501
    }

    def answer(request: Any, **_: Any) -> AWSResponse:
        headers = {"x-amzn-RequestId": "r1", "Content-Type": "application/x-amz-json-1.0"}
        return AWSResponse(request.url, 400, headers, _Raw(json.dumps(body).encode()))

    client.meta.events.register("before-send.dynamodb.TransactWriteItems", answer)
    return client


_FENCE = Fence("table-lease", "run-1", 3)


@pytest.mark.parametrize(
    ("reasons", "expected", "says"),
    [
        # The lease check (always the first action) failed: another instance holds the lease.
        (["ConditionalCheckFailed", "None"], LeaseLost, "lease 'table-lease' is no longer held by run-1 at epoch 3"),
        (["None", "ThrottlingError"], LedgerUnavailable, "cancelled (ThrottlingError)"),
        (["None", "ProvisionedThroughputExceeded"], LedgerUnavailable, "cancelled (ProvisionedThroughputExceeded)"),
        (["TransactionConflict", "None"], LedgerUnavailable, "cancelled (TransactionConflict)"),
        # The lease check failed whatever else did: the lease is another instance's.
        (["ConditionalCheckFailed", "ThrottlingError"], LeaseLost, "no longer held"),
        (["None", "ValidationError"], LedgerMisconfigured, "cancelled (ValidationError); retrying cannot fix"),
        (["None", "ItemCollectionSizeLimitExceeded"], LedgerMisconfigured, "(ItemCollectionSizeLimitExceeded)"),
        # A condition on a file item, which the job never sets: not a lost lease.
        (["None", "ConditionalCheckFailed"], LedgerMisconfigured, "cancelled (ConditionalCheckFailed)"),
    ],
)
def test_a_cancelled_transaction_is_classified_by_its_reasons(
    reasons: list[str], expected: type[Exception], says: str
) -> None:
    ledger = DynamoDbLedger("ledger-t", client=_cancelling_client(reasons))
    intent = BatchIntent("run-1-000001", "run-1", 1, ("s3://landing/a.ndjson",), datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(expected) as raised:
        ledger.begin(intent, _FENCE)
    assert type(raised.value) is expected
    assert says in str(raised.value)
    assert "s3://landing" not in str(raised.value)  # never an item's content


def test_a_cancelled_transaction_reaches_the_cli_as_the_exit_code_of_its_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Throttling stops a `--once` run with exit 4 (retry later), not exit 2 (fix the settings)."""
    for reasons, code in ((["None", "ThrottlingError"], cli.EXIT_LEDGER), (["None", "ValidationError"], 2)):
        error = cancellation_error("PutItem intent", "t", _parsed_cancellation(reasons), lease="lease x")

        def fail(*_: Any, error: Exception = error, **__: Any) -> Any:
            raise error

        monkeypatch.setattr("streaming.pipeline.job.run", fail)
        assert cli.main(["run", "--once", "--source", ".", "--warehouse", "."]) == code


def _parsed_cancellation(reasons: list[str]) -> ClientError:
    client = _cancelling_client(reasons)
    with pytest.raises(ClientError) as raised:
        client.transact_write_items(TransactItems=[{"Delete": {"TableName": "t", "Key": {"pk": {"S": "k"}}}}])
    return raised.value
