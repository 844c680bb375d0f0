"""What a retry can fix in the DynamoDB ledger: AWS failures mapped to the ledger's errors, and lease-call budgets.

A throttled or failing service is an outage (`LedgerUnavailable`: wait and retry); a wrong table name, a missing
permission or no region fails the same way every time (`LedgerMisconfigured`: stop and say what to check). Messages
name only the operation, the table and the AWS error code, never an item.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from streaming.ledger.base import LeaseLost, LedgerMisconfigured, LedgerUnavailable


def error_code(exc: ClientError) -> str:
    """The AWS error code of a failed call (`Unknown` when the response has none)."""
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


# Errors a later attempt can get past: throttling, the service's own failures. Anything else (a wrong table name,
# a missing permission, a malformed request) fails the same way every time, so waiting for it would loop forever.
_RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
        "TransactionInProgressException",
    }
)
# Client-side errors that are settings, not outages.
_SETTINGS_ERRORS = (NoRegionError, NoCredentialsError, PartialCredentialsError)


def ledger_error(operation: str, table: str, exc: Exception) -> Exception:
    """The ledger's error for an AWS failure: LedgerUnavailable if retrying can help, else LedgerMisconfigured.

    The message names only the operation, the table and the AWS error code (never an item).
    """
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _RETRYABLE_CODES or status >= 500:
            return LedgerUnavailable(f"DynamoDB ledger {table}: {operation} failed ({code})")
        return LedgerMisconfigured(
            f"DynamoDB ledger {table}: {operation} failed ({code}); retrying cannot fix this: check ledger.table,"
            " the region and the job role's DynamoDB permissions"
        )
    if isinstance(exc, _SETTINGS_ERRORS):
        return LedgerMisconfigured(
            f"DynamoDB ledger {table}: {type(exc).__name__}: set ledger.region (or AWS_REGION) and AWS credentials"
        )
    return LedgerUnavailable(f"DynamoDB ledger {table}: {operation} failed ({type(exc).__name__})")


# TransactionCanceledException carries one reason per action (DynamoDB's TransactWriteItems reference). Of these,
# a later attempt can get past throttling and a conflict with another transaction on the same item.
_RETRYABLE_REASONS = frozenset(
    {"ThrottlingError", "ProvisionedThroughputExceeded", "TransactionConflict", "RequestLimitExceeded"}
)
_NO_REASON = "None"  # the code of an action that did not fail


def cancellation_error(operation: str, table: str, exc: ClientError, *, lease: str | None) -> Exception:
    """The ledger's error for a cancelled transaction, decided by its reasons, not by the cancellation itself.

    With `lease` (the fence, described for the message), the first action is the lease check: only its
    `ConditionalCheckFailed` means the lease is lost. Throttling and conflicts are outages; anything else (a
    validation reason, a failed condition the job never sets) fails the same way every time.
    """
    codes = [str(r.get("Code") or _NO_REASON) for r in exc.response.get("CancellationReasons") or []]
    failed = [c for c in codes if c != _NO_REASON]
    named = ", ".join(dict.fromkeys(failed)) or "no reason given"
    if lease is not None and codes[:1] == ["ConditionalCheckFailed"]:
        return LeaseLost(f"DynamoDB ledger {table}: {operation} refused: {lease}")
    if not failed or any(c in _RETRYABLE_REASONS for c in failed):
        return LedgerUnavailable(f"DynamoDB ledger {table}: {operation} cancelled ({named})")
    return LedgerMisconfigured(
        f"DynamoDB ledger {table}: {operation} cancelled ({named}); retrying cannot fix this: check the ledger table"
        " (deploy/template.json defines it) and the job role's DynamoDB permissions"
    )


@contextmanager
def guard(operation: str, table: str) -> Iterator[None]:
    """Turn any AWS failure into the ledger's error (see `ledger_error`)."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise ledger_error(operation, table, exc) from exc


LEASE_ATTEMPTS = 2


@functools.cache  # one Config per TTL: aws.client caches clients by their config, and a client costs ~0.25 s
def lease_config(ttl: timedelta) -> Config:
    """Client settings for lease calls: two attempts whose connect + read timeouts total 80% of a third of `ttl`."""
    per_attempt = ttl.total_seconds() / 3 * 0.4
    connect = min(2.0, per_attempt / 3)
    return Config(
        retries={"mode": "standard", "total_max_attempts": LEASE_ATTEMPTS},
        connect_timeout=connect,
        read_timeout=per_attempt - connect,
    )
