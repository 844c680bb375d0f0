"""The CLI's exit codes and the errors each one stands for: one table, read by the CLI and the README.

Every error a user can cause or fix (a setting, a path, credentials, a query, a held lease, an outage, a file that
cannot be read) ends a command with one line on stderr (what was wrong, what to do) and its exit code; only an
unexpected error is code 1, and even then the traceback waits for `--verbose`. `python -m streaming.exits`
refreshes the README's table.
"""

from __future__ import annotations

from dataclasses import dataclass

from streaming import readme
from streaming.config import ConfigError
from streaming.ledger import LeaseHeld, LedgerUnavailable
from streaming.storage import FileReadError

DONE, FAILED, CONFIG, LEASE, LEDGER, FILE, BEHIND, STALLED = range(8)


@dataclass(frozen=True)
class ExitCode:
    """One exit code: what it means and which errors end a command with it."""

    code: int
    short: str  # a few words, for --help
    meaning: str
    errors: tuple[str, ...] = ()  # what stands behind it, for the README


EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(DONE, "done", "done; for `status --check`: the stream is OK"),
    ExitCode(
        FAILED,
        "unexpected error",
        "an unexpected error: one line names it, `--verbose` shows the traceback; a retry may succeed",
    ),
    ExitCode(
        CONFIG,
        "bad input",
        "bad input: a setting, flag or path, credentials or region, a query DuckDB refuses, a ledger that refuses in"
        " a way retrying cannot fix; the message names it and what to do",
        (
            "ConfigError",
            "QueryError",
            "LedgerMisconfigured",
            "CheckpointMismatch",
            "NoCredentialsError",
            "NoRegionError",
            "AccessDenied",
        ),
    ),
    ExitCode(
        LEASE,
        "writer lease held elsewhere",
        "another instance holds the table's writer lease (or took it over)",
        ("LeaseHeld", "LeaseLost"),
    ),
    ExitCode(
        LEDGER,
        "ledger unreachable",
        "the ledger is unreachable: nothing was committed past it; run again later",
        ("LedgerUnavailable",),
    ),
    ExitCode(
        FILE,
        "a file cannot be read",
        "a listed file cannot be read (permissions, KMS, Glacier): the message names it; nothing of it was"
        " committed, it is read again once access is fixed",
        ("FileReadError",),
    ),
    ExitCode(
        BEHIND, "falling behind", "`status --check`: the oldest waiting file is older than `status.behind_seconds`"
    ),
    ExitCode(
        STALLED,
        "stalled",
        "`status --check`: files wait and nothing was committed for `status.stalled_seconds`, or the"
        " writer lease expired while files wait",
    ),
)

# AWS error codes that mean "this caller may not": a setting (role, policy, key), never an outage.
_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "InvalidAccessKeyId",
           "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException", "UnrecognizedClientException")  # fmt: skip


def classify(exc: BaseException) -> tuple[int, str]:
    """The exit code for `exc` and the one line to print (never a record's content: our errors carry none)."""
    if isinstance(exc, ConfigError):
        return CONFIG, str(exc)
    if isinstance(exc, LeaseHeld):
        return LEASE, f"another instance is writing this table: {exc}"
    if isinstance(exc, LedgerUnavailable):
        return LEDGER, f"ledger unavailable: {exc}"
    if isinstance(exc, FileReadError):
        return FILE, str(exc)
    aws = _aws_setting(exc)
    if aws is not None:
        return CONFIG, aws
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (
        FAILED,
        f"unexpected error ({type(exc).__name__}){': ' + first[:300] if first else ''}; --verbose shows where",
    )


def _aws_setting(exc: BaseException) -> str | None:
    """A one-line answer for AWS errors that are settings (credentials, region, permissions), else None."""
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError, PartialCredentialsError

    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (
            f"no AWS credentials ({type(exc).__name__}): set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,"
            " or run where a role provides them"
        )
    if isinstance(exc, NoRegionError):
        return "no AWS region (NoRegionError): set AWS_REGION (or the setting's region, e.g. ledger.region)"
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _DENIED:
            operation = getattr(exc, "operation_name", "a call")
            return f"AWS refused {operation} ({code}): check the credentials and the role's permissions"
    return None


def readme_table() -> str:
    """The README's exit-code table, generated from EXIT_CODES."""
    lines = ["| code | | meaning | raised for |", "|---|---|---|---|"]
    for ec in EXIT_CODES:
        lines.append(f"| {ec.code} | {ec.short} | {ec.meaning} | {', '.join(f'`{e}`' for e in ec.errors)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    readme.write("exits", readme_table())
