"""A ledger that accepts connections and never answers: the writer lease's renewal gives up, and the writer stops,
within a third of the lease TTL, so neither outlives the lease it holds (the DynamoDB ledger through the harness's
proxy in front of moto, in real time)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from aws_fixtures import create_ledger_table
from harness import TcpProxy

from streaming.ledger import LedgerUnavailable
from streaming.ledger.dynamodb import DynamoDbLedger
from streaming.ledger.lease import VALID_SHARE, WriterLease

pytestmark = pytest.mark.slow  # seconds of real time against moto

TTL = timedelta(seconds=6)  # as the fault harness's frozen writer: renewals every 2 s, valid for 4 s
THIRD = TTL.total_seconds() / 3


@pytest.fixture
def proxy(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TcpProxy]:
    """The DynamoDB endpoint behind the harness's proxy; everything else reaches moto directly."""
    proxy = TcpProxy.to(aws_env).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
    yield proxy
    proxy.close()


def _timed(call: Callable[[], Any], limit: float) -> tuple[float, BaseException | None]:
    """Run `call` in a thread; how long it took and what it raised. A call still running after `limit` fails the
    test (the thread is left to its own timeouts)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    began = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    took = time.monotonic() - began
    assert outcome, f"still waiting for the ledger after {took:.1f}s (a third of the TTL is {THIRD:.0f}s)"
    return took, outcome[0]


def test_a_hung_ledger_the_renewal_gives_up_and_the_writer_stops_within_a_third_of_the_ttl(
    proxy: TcpProxy, unique_name: str
) -> None:
    create_ledger_table(unique_name)
    ledger = DynamoDbLedger(unique_name, lease_ttl=TTL)  # the lease client is built for this TTL
    lease = WriterLease(ledger, "writer:t", "run-a", TTL, timedelta(0))
    lease._stop.set()  # no background renewals: this test makes each one itself
    try:
        renewed = time.monotonic()
        assert lease.check().epoch == 1

        proxy.hang()
        # A renewal, as the background thread makes it every third of the TTL: it gives up in time, as an outage
        # (the lease is not lost: nobody else took it).
        took, error = _timed(lambda: lease._take(), 2 * THIRD)
        assert isinstance(error, LedgerUnavailable), error
        print(f"hung renewal gave up after {took:.2f}s (a third of the TTL: {THIRD:.0f}s)")
        assert took < THIRD, f"the renewal gave up after {took:.1f}s, a third of the TTL is {THIRD:.0f}s"
        assert proxy.held > 0, "the renewal never reached the hung ledger"
        assert not lease.lost.is_set()

        # The writer: before each write it checks the lease. Past its validity, that check must renew first; with
        # the ledger hung it gives up in time and no write starts, while the lease in the store is still ours.
        time.sleep(max(0.0, renewed + TTL.total_seconds() * VALID_SHARE - time.monotonic()))
        took, error = _timed(lease.check, 2 * THIRD)
        assert isinstance(error, LedgerUnavailable), f"a write would have started without a lease: {error}"
        print(f"writer's check past validity stopped after {took:.2f}s")
        assert took < THIRD, f"the writer stopped after {took:.1f}s, a third of the TTL is {THIRD:.0f}s"
        assert time.monotonic() < renewed + TTL.total_seconds(), "the writer outlived the lease it held"
    finally:
        proxy.resume()
        lease.release()
    # The ledger answers again: the lease is still this run's, at the same epoch.
    assert ledger.acquire_lease("writer:t", "run-a", TTL) == 1
