"""The writer lease: fencing epoch, validity on the monotonic clock, takeover detection (no sleeps: clocks injected)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streaming import config as conf
from streaming.ledger import BatchIntent, Fence, LeaseHeld, LeaseLost, SqliteLedger
from streaming.ledger.lease import VALID_SHARE, WriterLease, lease_name

TTL = timedelta(seconds=30)


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class WallClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


@pytest.fixture
def ledger(tmp_path: Path, wall: WallClock) -> SqliteLedger:
    return SqliteLedger(tmp_path / "ledger.sqlite3", clock=wall)


def _lease(ledger: SqliteLedger, owner: str, clock: Clock) -> WriterLease:
    lease = WriterLease(ledger, "writer:t", owner, TTL, timedelta(0), clock=clock)
    lease._stop.set()  # no background renewals: the test renews by hand
    return lease


def test_past_its_validity_check_renews_first_and_keeps_the_epoch_if_nobody_took_over(
    ledger: SqliteLedger, wall: WallClock
) -> None:
    clock = Clock()
    lease = _lease(ledger, "a", clock)
    assert lease.check() == Fence("writer:t", "a", 1)
    clock.now += TTL.total_seconds() * VALID_SHARE + 5  # a long GC pause; nobody took the lease meanwhile
    wall.now += TTL + timedelta(seconds=5)
    assert lease.check() == Fence("writer:t", "a", 1)  # renewed on the spot, same epoch: writes may go on
    assert not lease.lost.is_set()


def test_past_its_validity_check_refuses_if_another_instance_took_over(ledger: SqliteLedger, wall: WallClock) -> None:
    clock = Clock()
    lease = _lease(ledger, "a", clock)
    clock.now += TTL.total_seconds() + 5  # frozen (SIGSTOP) past the TTL ...
    wall.now += TTL + timedelta(seconds=5)
    _lease(ledger, "b", Clock())  # ... while a second instance took over
    with pytest.raises(LeaseLost, match="lost while not renewed"):
        lease.check()
    assert lease.lost.is_set()


def test_validity_counts_from_when_a_renewal_started(ledger: SqliteLedger, wall: WallClock) -> None:
    clock = Clock()
    lease = _lease(ledger, "a", clock)
    clock.now += 15
    lease._take()  # a renewal that began at +15 s
    clock.now += TTL.total_seconds() * VALID_SHARE - 0.1
    wall.now += TTL * 2  # not consulted while valid: a check inside the validity asks the store nothing
    _lease(ledger, "b", Clock())
    assert lease.check().epoch == 1
    clock.now += 0.2
    with pytest.raises(LeaseLost):
        lease.check()


def test_a_takeover_makes_the_old_holder_lose_and_its_fence_stale(ledger: SqliteLedger, wall: WallClock) -> None:
    clock = Clock()
    old = _lease(ledger, "a", clock)
    stale = old.check()
    wall.now += TTL + timedelta(seconds=1)  # A stalled; its lease ran out in the store
    new = _lease(ledger, "b", clock)
    assert new.check() == Fence("writer:t", "b", 2)

    with pytest.raises(LeaseLost):
        ledger.begin(BatchIntent("a-1", "a", 1, ("f",), wall.now), stale)
    with pytest.raises(LeaseHeld):  # A wakes up and tries to renew: refused, and it knows it lost
        old._take()
    wall.now += TTL + timedelta(seconds=1)  # B died too; A takes the lease again, at a higher epoch
    with pytest.raises(LeaseLost, match="moved from epoch 1 to 3"):
        old._take()
    assert old.lost.is_set()
    with pytest.raises(LeaseLost, match="taken over"):
        old.check()


def test_a_second_instance_is_refused_while_the_first_is_live(ledger: SqliteLedger) -> None:
    _lease(ledger, "a", Clock())
    with pytest.raises(LeaseHeld, match="held by a"):
        _lease(ledger, "b", Clock())


def test_one_lease_per_table_whatever_the_spelling_of_the_warehouse() -> None:
    names = {lease_name(conf.load(None, {"warehouse": w})) for w in ("s3a://lake/bronze", "s3://lake/bronze/")}
    assert names == {"writer:s3://lake/bronze/bronze_encounter"}
