"""Pure: given how long the drain has run and what the Gateway replicas report, is it over?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .config import DrainConfig

Reason = Literal["forced", "grace_over", "idle", "not_ready_period", "in_flight", "unknown"]


@dataclass(frozen=True)
class DrainVerdict:
    done: bool
    reason: Reason
    in_flight: int | None  # requests in flight over every replica that answered; None: none answered

    def describe(self) -> str:
        """One line for the console: what the drain waits for, or why it ended."""
        n = "?" if self.in_flight is None else str(self.in_flight)
        return {
            "forced": f"drain skipped (second signal): {n} in flight cut",
            "grace_over": f"drain grace over: {n} in flight cut",
            "idle": "drained: nothing in flight",
            "not_ready_period": f"draining: not ready, {n} in flight (load balancers are told first)",
            "in_flight": f"draining: {n} in flight",
            "unknown": "draining: waiting for the Gateway replicas to report",
        }[self.reason]


def decide(cfg: DrainConfig, elapsed_s: float, in_flight: list[int] | None, forced: bool) -> DrainVerdict:
    """``elapsed_s`` since the drain began; ``in_flight``: one count per Gateway replica that answered (None when
    none could be asked); ``forced``: a second signal came. The stack may stop once every replica has been not
    ready for ``min_not_ready_s`` and none has a request in flight, and at the latest after ``grace_s``."""
    total = None if in_flight is None else sum(in_flight)
    if forced:
        return DrainVerdict(True, "forced", total)
    if elapsed_s >= cfg.grace_s:
        return DrainVerdict(True, "grace_over", total)
    if elapsed_s < cfg.min_not_ready_s:
        return DrainVerdict(False, "not_ready_period", total)
    if total is None:
        # Unknown is not idle: a replica at max_ongoing_requests answers late, and it may be the busy one.
        return DrainVerdict(False, "unknown", total)
    if total == 0:
        return DrainVerdict(True, "idle", total)
    return DrainVerdict(False, "in_flight", total)


# `finserve drain`'s exit status (a preStop hook's failure shows as a FailedPreStopHook event on the pod).
DRAINED, CUT, NOT_JOINED = 0, 1, 2


def exit_code(verdict: DrainVerdict | None) -> int:
    """0: drained, or no Gateway replica was serving; 1: the wait ended with requests possibly still in flight."""
    return DRAINED if verdict is None or verdict.reason == "idle" else CUT
