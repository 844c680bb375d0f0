"""The CLI's exit codes and the errors each one stands for: one table, read by the CLI and docs/reference.md.

Every error a user can cause or fix (a setting, a path, credentials, a query, a held lease, an outage, a file that
cannot be read) ends a command with one line on stderr (what was wrong, what to do) and its exit code; only an
unexpected error is code 1, and even then the traceback waits for `--verbose`. `make docs`
refreshes the table in docs/reference.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from streaming.adapters.storage import FileReadError
from streaming.config import ConfigError
from streaming.ledger import LeaseHeld, LedgerUnavailable

DONE, FAILED, CONFIG, LEASE, LEDGER, FILE, BEHIND, STALLED = range(8)


@dataclass(frozen=True)
class ExitCode:
    """One exit code: what it means and which errors end a command with it."""

    code: int
    short: str  # a few words, for --help
    meaning: str


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
    ),
    ExitCode(
        LEASE,
        "writer lease held elsewhere",
        "another instance holds the table's writer lease (or took it over)",
    ),
    ExitCode(
        LEDGER,
        "ledger unreachable",
        "the ledger is unreachable: nothing was committed past it; run again later",
    ),
    ExitCode(
        FILE,
        "a file cannot be read",
        "a listed file cannot be read (permissions, KMS, Glacier): the message names it; nothing of it was"
        " committed, it is read again once access is fixed",
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


@dataclass(frozen=True)
class Rule:
    """Errors that end a command with `code`, and the one line said for them."""

    code: int
    names: tuple[str, ...]  # what the reference lists
    matches: Callable[[BaseException], bool]
    line: Callable[[BaseException], str] = str


def _aws(*names: str) -> Callable[[BaseException], bool]:
    """Whether an error is one of botocore's `names` (botocore is imported only when a command fails)."""
    return lambda exc: any(c.__module__.startswith("botocore") and c.__name__ in names for c in type(exc).__mro__)


def _denied(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return _aws("ClientError")(exc) and code in _DENIED


_NO_CREDENTIALS = ("NoCredentialsError", "PartialCredentialsError")
# Most specific first; the first rule that matches decides. The reference's "raised for" column is made from these.
RULES: tuple[Rule, ...] = (
    Rule(CONFIG, ("ConfigError", "QueryError", "LedgerMisconfigured", "CheckpointMismatch"),
         lambda e: isinstance(e, ConfigError)),
    Rule(LEASE, ("LeaseHeld", "LeaseLost"), lambda e: isinstance(e, LeaseHeld),
         lambda e: f"another instance is writing this table: {e}"),
    Rule(LEDGER, ("LedgerUnavailable",), lambda e: isinstance(e, LedgerUnavailable),
         lambda e: f"ledger unavailable: {e}"),
    Rule(FILE, ("FileReadError",), lambda e: isinstance(e, FileReadError)),
    Rule(CONFIG, _NO_CREDENTIALS, _aws(*_NO_CREDENTIALS),
         lambda e: f"no AWS credentials ({type(e).__name__}): set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
         "AWS_SECRET_ACCESS_KEY, or run where a role provides them"),
    Rule(CONFIG, ("NoRegionError",), _aws("NoRegionError"),
         lambda e: "no AWS region (NoRegionError): set AWS_REGION (or the setting's region, e.g. ledger.region)"),
    Rule(CONFIG, ("AccessDenied",), _denied,
         lambda e: f"AWS refused {getattr(e, 'operation_name', 'a call')}"
         f" ({getattr(e, 'response', {}).get('Error', {}).get('Code')}): check the credentials and the role's"
         " permissions"),
)  # fmt: skip


def classify(exc: BaseException) -> tuple[int, str]:
    """The exit code for `exc` and the one line to print (never a record's content: our errors carry none)."""
    for rule in RULES:
        if rule.matches(exc):
            return rule.code, rule.line(exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (
        FAILED,
        f"unexpected error ({type(exc).__name__}){': ' + first[:300] if first else ''}; --verbose shows where",
    )


def readme_table() -> str:
    """The reference's exit-code table, generated from EXIT_CODES."""
    lines = ["| code | | meaning | raised for |", "|---|---|---|---|"]
    for ec in EXIT_CODES:
        raised = [name for rule in RULES if rule.code == ec.code for name in rule.names]
        lines.append(f"| {ec.code} | {ec.short} | {ec.meaning} | {', '.join(f'`{e}`' for e in raised)} |")
    return "\n".join(lines)
