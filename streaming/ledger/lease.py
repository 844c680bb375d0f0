"""The single-writer lease of a table, with a fencing token, kept alive by a background thread.

A lease alone does not stop a writer that stalls past its TTL (a frozen container, a renewal hung in retries, a
skewed clock): a second instance takes over while the first, once it wakes, still believes it holds the lease.
So the lease carries an epoch that grows with every takeover, and the holder:

- checks, before each Hudi write, that its lease is still valid on the *monotonic* clock, counted from the start
  of its last successful renewal (`check`), so a stall is noticed whatever the wall clocks say;
- passes the fence (name, owner, epoch) to every ledger change, which the store applies only while that owner
  still holds that epoch, in the same transaction (`Ledger.begin/commit/abandon`).

What this guarantees, and what it does not, is in docs/design.md ("One writer, fenced").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from streaming.config import JobConfig, canonical_table_uri
from streaming.ledger.base import Fence, LeaseHeld, LeaseLost, Ledger, LedgerUnavailable

log = logging.getLogger(__name__)

# A lease counts as ours for this share of the TTL after a renewal began: the rest is a margin for clock skew
# between instances and for a write that started just before the deadline.
VALID_SHARE = 2 / 3


def lease_name(config: JobConfig) -> str:
    """One lease per table, whatever spelling (s3:// or s3a://) its warehouse is given in."""
    return f"writer:{canonical_table_uri(config)}"


class WriterLease:
    """Take the lease (waiting up to `wait` for a crashed holder's to expire), then renew it every TTL/3."""

    def __init__(
        self,
        ledger: Ledger,
        name: str,
        owner: str,
        ttl: timedelta,
        wait: timedelta,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger, self.name, self.owner, self.ttl, self.wait = ledger, name, owner, ttl, wait
        self._clock = clock
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._valid_until = 0.0
        self.epoch = 0
        self._taking = threading.Lock()
        self._acquire(wait)
        self._thread = threading.Thread(target=self._renew, name="bronze-lease", daemon=True)
        self._thread.start()

    def _take(self) -> None:
        """One acquire/renew call; the lease counts from when the call *started* (a slow answer eats its time)."""
        with self._taking:  # the renewal thread and a late `check` may both renew
            started = self._clock()
            epoch = self.ledger.acquire_lease(self.name, self.owner, self.ttl)
            if self.epoch and epoch != self.epoch:  # someone else held it in between: our earlier writes are fenced
                self.lost.set()
                raise LeaseLost(f"writer lease {self.name} moved from epoch {self.epoch} to {epoch}")
            self.epoch = epoch
            self._valid_until = started + self.ttl.total_seconds() * VALID_SHARE

    def _acquire(self, wait: timedelta) -> None:
        """Take the lease; a live holder renews, so a second instance still fails (LeaseHeld) once `wait` is over,
        while a job restarted after a crash only waits out the dead holder's remaining TTL."""
        deadline = self._clock() + wait.total_seconds()
        while True:
            try:
                self._take()
                return
            except LeaseLost:
                raise
            except LeaseHeld as exc:
                if self._clock() >= deadline:
                    raise
                log.warning("waiting for the writer lease: %s", exc)
                time.sleep(min(2.0, max(0.1, deadline - self._clock())))

    @property
    def fence(self) -> Fence:
        return Fence(self.name, self.owner, self.epoch)

    def check(self) -> Fence:
        """The fence to write under, or LeaseLost if the lease is no longer ours.

        Past its validity on the monotonic clock (a frozen process, a renewal stuck in retries, a long GC pause)
        the lease is renewed here before anything is written: that succeeds, at the same epoch, only if nobody
        took it over meanwhile; otherwise the lease is lost and the write does not start.
        """
        if self.lost.is_set():
            raise LeaseLost(f"writer lease {self.name} was taken over by another instance")
        late = self._clock() - self._valid_until
        if late >= 0:
            log.warning("writer lease %s is %.1fs past its validity; renewing before writing", self.name, late)
            try:
                self._take()
            except LeaseHeld as exc:
                self.lost.set()
                raise LeaseLost(f"writer lease {self.name} lost while not renewed: {exc}") from None
        return self.fence

    def hold(self) -> None:
        """Make sure the lease is still ours before writing again (after an outage it may have expired)."""
        if self.lost.is_set():
            raise LeaseLost(f"writer lease {self.name} was taken over by another instance")
        self._acquire(self.wait)

    def _renew(self) -> None:
        failing = False
        while not self._stop.wait(self.ttl.total_seconds() / 3):
            try:
                self._take()
            except LeaseHeld:  # LeaseLost too
                log.error("writer lease %s was taken over; stopping", self.name)
                self.lost.set()
                return
            except Exception as exc:  # a ledger hiccup: retry next round; the lease stays valid for a while
                if not failing:  # once per streak: an outage must not flood the log
                    log.warning("could not renew writer lease %s (%s); retrying", self.name, type(exc).__name__)
                failing = True
            else:
                if failing:
                    log.warning("writer lease %s renewed again", self.name)
                failing = False

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if not self.lost.is_set():
            try:
                self.ledger.release_lease(self.name, self.owner)
            except LedgerUnavailable:  # it expires on its own after the TTL; the original error matters more
                log.warning("could not release writer lease %s; it expires after its TTL", self.name)


@contextmanager
def writer_lease(ledger: Ledger, config: JobConfig, owner: str) -> Iterator[WriterLease]:
    """Hold the table's single-writer lease for the block (renewed in the background), then release it."""
    lease = WriterLease(
        ledger,
        lease_name(config),
        owner,
        ttl=timedelta(seconds=config.lease_ttl_seconds),
        wait=timedelta(seconds=config.lease_wait_seconds),
    )
    try:
        yield lease
    finally:
        lease.release()
