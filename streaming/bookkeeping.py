"""A continuous stream's bookkeeping (ingest-log row, ledger commit) overlapping the next batch.

A batch's ingest-log row is a second Hudi commit (~0.7 s on 2 cores, README "Performance"). Once the bronze commit
carries the batch key, nothing of the batch can be lost: `batch.recover` finishes it from that commit after a crash.
So the stream hands Spark back the batch there, and its log row and ledger commit are written on one background
thread while the next trigger lists, reads and writes bronze: the next batch starts ~0.7 s sooner.

At most one batch's bookkeeping is in flight, and batches finish in order: a batch waits for the one before before
handing over its own, and an error there fails that batch (the query stops; `job.run` recovers as after a crash).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from streaming.batch import BatchResult, WrittenBatch

log = logging.getLogger(__name__)


class Bookkeeping:
    """Finish written batches: inline, or (`overlap`, bronze committed) on one background thread."""

    def __init__(self, overlap: bool) -> None:
        self.overlap = overlap
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def finish(self, batch: WrittenBatch, then: Callable[[BatchResult], None]) -> None:
        """Finish `batch` and pass its result to `then`; returns at once when it can finish in the background."""
        self.wait()  # the batch before first: in order, and its error fails this batch
        if not (self.overlap and batch.durable):  # without a bronze commit, recovery could not finish it
            then(batch.finish())
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="bookkeeping")
        self._pending = self._pool.submit(lambda: then(batch.finish()))

    def failed(self) -> bool:
        """Whether the background bookkeeping has failed (the stream must stop; `wait` raises the error)."""
        pending = self._pending
        return pending is not None and pending.done() and pending.exception() is not None

    def wait(self) -> None:
        """Wait for the batch in flight, if any; raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self, *, quiet: bool = False) -> None:
        """Wait for the batch in flight and stop the thread; `quiet` logs its error instead (another is raised)."""
        try:
            self.wait()
        except Exception as exc:
            if not quiet:
                raise
            log.warning("a batch's bookkeeping failed too (%s); recovery finishes it", type(exc).__name__)
        finally:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None
