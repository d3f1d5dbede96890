"""The end-to-end deadline of one request and the share of it each stage may use (pure; clock injectable)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import DeadlineExceeded
from .config import DegradeConfig

__all__ = ["Deadline", "DeadlineExceeded"]


@dataclass
class Deadline:
    """``budget_ms`` from ``start`` (perf_counter seconds)."""

    budget_ms: int
    start: float = field(default_factory=time.perf_counter)
    clock: Callable[[], float] = time.perf_counter

    @classmethod
    def for_request(cls, config: DegradeConfig, asked_ms: int | None, start: float | None = None) -> Deadline:
        """The client's deadline (x-finserve-deadline-ms) clamped to the configured bounds, or the default."""
        wanted = config.deadline_default_ms if asked_ms is None else asked_ms
        budget = min(max(wanted, config.deadline_min_ms), config.deadline_max_ms)
        return cls(budget, start if start is not None else time.perf_counter())

    def remaining_s(self) -> float:
        return max(0.0, self.budget_ms / 1000 - (self.clock() - self.start))

    def stage_s(self, cap_ms: int | None, reserve_ms: int = 0) -> float:
        """Seconds a stage may take: its cap, within what is left of the deadline less ``reserve_ms``."""
        left = max(0.0, self.remaining_s() - reserve_ms / 1000)
        return left if cap_ms is None else min(left, cap_ms / 1000)
