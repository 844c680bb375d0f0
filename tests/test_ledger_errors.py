"""Which ledger failures are outages (wait and retry) and which are settings (stop with exit code 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

from streaming import cli
from streaming.ledger import LedgerMisconfigured, LedgerUnavailable
from streaming.ledger_dynamodb import DynamoDbLedger, ledger_error


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
    argv = ["run", "--once", "--source", str(tmp_path / "in"), "--warehouse", str(tmp_path / "wh")]
    code = cli.main([*argv, "--ledger-backend", "dynamodb"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "set ledger.region (or AWS_REGION)" in err
