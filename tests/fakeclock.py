"""A monotonic clock the test moves by hand (TTL, breaker and refresh windows without sleeping)."""

from __future__ import annotations


class FakeClock:
    """Called like ``time.monotonic``; ``advance`` moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
