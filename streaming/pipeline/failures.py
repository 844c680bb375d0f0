"""Errors raised inside a micro-batch reach the driver wrapped by Spark and Py4J, as text: map them back here.

A batch that fails in `foreachBatch` (or in a Python worker under it) surfaces as a `StreamingQueryException`
whose message holds the original Python traceback. The job decides what to do by the original error's type, so
this is the one place that recognises them.
"""

from __future__ import annotations

import re

from streaming.adapters.storage import FileReadError
from streaming.ledger import LeaseHeld, LeaseLost, LedgerMisconfigured, LedgerUnavailable

# Most specific first: LeaseLost is a LeaseHeld, LedgerMisconfigured a ConfigError.
KNOWN: tuple[type[Exception], ...] = (LeaseLost, LeaseHeld, LedgerMisconfigured, LedgerUnavailable, FileReadError)


def unwrap(exc: BaseException) -> BaseException:
    """The project error `exc` stands for (rebuilt from its text when Spark wrapped it), else `exc` itself."""
    if isinstance(exc, KNOWN):
        return exc
    text = str(exc)
    for cls in KNOWN:
        found = re.search(rf"\b{cls.__name__}: ([^\n]+)", text)
        if found:
            message = found.group(1).strip()
            return FileReadError.from_message(message) if cls is FileReadError else cls(message)
    return exc


# How Spark reports a Python worker (or its executor) that died instead of raising: killed by the OS for memory
# (SIGKILL, exit 137), a container over its limit, a native crash. Retrying the same input dies the same way.
# A reused worker's socket that a death closed under the next task reads as `Socket is closed` (seen here when a
# batch read apart met the worker a kill had just taken).
_WORKER_DIED = re.compile(
    r"Python worker exited unexpectedly|ExecutorLostFailure|Container killed|exit code 137|"
    r"killed by (YARN|the OS)|Worker crashed|SocketException: Socket is closed"
)


def worker_died(exc: BaseException) -> bool:
    """Whether `exc` is Spark's report of a worker process that died while running a task."""
    return bool(_WORKER_DIED.search(str(exc)))
