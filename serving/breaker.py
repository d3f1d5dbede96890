"""A small circuit breaker: after a failure, skip a dependency for a while, then let one call probe it.

Shared by retrieval (Milvus, the Redis L2) and the generator's provider failover."""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    """Closed: calls go through. Open: calls are refused until ``retry_s`` has passed since the last failure;
    then exactly one call is let through as a probe (the window restarts for the others), and its outcome
    closes or re-opens the breaker. Single-threaded use (one event loop)."""

    def __init__(self, retry_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.retry_s = retry_s
        self._clock = clock
        self._open_until: float | None = None

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def allow(self) -> bool:
        if self._open_until is None:
            return True
        now = self._clock()
        if now >= self._open_until:
            self._open_until = now + self.retry_s  # this caller probes; the rest wait another window
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until the next probe (0 when closed)."""
        if self._open_until is None:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    def record_success(self) -> None:
        self._open_until = None

    def record_failure(self) -> None:
        self._open_until = self._clock() + self.retry_s
