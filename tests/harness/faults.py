"""Kill points for the fault-injection harness: the batch hook `fault_job.py` gives the real job.

A point is a step of the micro-batch protocol (`streaming.pipeline.batch.STEPS`) where a real crash (SIGKILL, a
lost Glue worker) could land. The harness starts the job with BRONZE_KILL_AT=<point> and checks that a restart
converges.
"""

from __future__ import annotations

import os
import signal

from streaming.pipeline.batch import STEPS
from streaming.pipeline.ingest_log import LOG_WRITTEN

# After every step of the batch protocol, and inside the ingest log's write (its rows written, their batches not yet
# closed in the ledger): a kill point each.
_AFTER_STEPS = tuple(f"after_{step.name}" for step in STEPS)
_AT = _AFTER_STEPS.index("after_ledger") + 1
POINTS = (*_AFTER_STEPS[:_AT], LOG_WRITTEN, *_AFTER_STEPS[_AT:])


def point(name: str) -> None:
    """Die here, without any cleanup, if the harness asked for it (BRONZE_KILL_AT, once per BRONZE_KILL_FLAG).

    With BRONZE_KILL_SIGNAL=STOP the whole process group (driver, JVM, workers) is frozen instead, as a stalled
    container would be, until the harness sends SIGCONT.
    """
    if os.environ.get("BRONZE_KILL_AT") != name:
        return
    flag = os.environ.get("BRONZE_KILL_FLAG")
    if flag:  # kill only the first time this point is reached, so the restarted job can finish
        try:
            fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
    if os.environ.get("BRONZE_KILL_SIGNAL") == "STOP":
        os.killpg(os.getpgid(0), signal.SIGSTOP)
        return
    os.kill(os.getpid(), signal.SIGKILL)
