"""The circuit breaker's states on a hand-moved clock."""

from __future__ import annotations

import pytest
from fakeclock import FakeClock

from finserve.serving.breaker import CircuitBreaker


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_closed_until_a_failure(clock) -> None:
    breaker = CircuitBreaker(5.0, clock)
    assert breaker.allow() and breaker.allow()
    assert breaker.retry_after() == 0.0


def test_open_refuses_until_the_window_passes_then_lets_one_probe(clock) -> None:
    breaker = CircuitBreaker(5.0, clock)
    breaker.record_failure()
    assert not breaker.allow()
    assert breaker.retry_after() == 5.0
    clock.advance(4.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else waits for the probe's outcome


def test_probe_outcome_closes_or_reopens(clock) -> None:
    breaker = CircuitBreaker(2.0, clock)
    breaker.record_failure()
    clock.advance(2.0)
    assert breaker.allow()
    breaker.record_failure()
    assert not breaker.allow() and breaker.retry_after() == 2.0
    clock.advance(2.0)
    assert breaker.allow()
    breaker.record_success()
    assert not breaker.is_open and breaker.allow() and breaker.allow()
