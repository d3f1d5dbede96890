"""What the log says while Milvus is down: one warning when an outage starts (the error's class, no
traceback), at most one reminder per interval, one info line when it ends; the decisions are pure.

pymilvus itself logs a traceback for every failed call and reconnect attempt (129 in 74 s of one outage):
pymilvus_logs.py drops those, since each failure they describe reaches the retriever, and this log, as
VectorStoreUnavailable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

Event = Literal["start", "remind"]
MESSAGE_CHARS = 200  # the upstream message in a log line: enough to name the endpoint, never a page of it


@dataclass
class OutageState:
    """Pure: when to say what. ``failures`` counts the failed calls of the current outage."""

    remind_s: float
    started: float | None = None
    last_said: float = 0.0
    failures: int = 0

    def on_failure(self, now: float) -> Event | None:
        self.failures += 1
        if self.started is None:
            self.started, self.last_said, self.failures = now, now, 1
            return "start"
        if now - self.last_said >= self.remind_s:
            self.last_said = now
            return "remind"
        return None

    def on_success(self, now: float) -> float | None:
        """Seconds the outage lasted when this success ends one, else None."""
        if self.started is None:
            return None
        lasted, self.started, self.failures = now - self.started, None, 0
        return lasted


def cause_of(exc: BaseException) -> BaseException:
    """The upstream error behind ours (VectorStoreUnavailable wraps pymilvus's MilvusException)."""
    return exc.__cause__ if exc.__cause__ is not None else exc


class OutageLog:
    """OutageState with its log lines, for one dependency (``name``: Milvus)."""

    def __init__(self, name: str, remind_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.state = OutageState(remind_s)
        self._clock = clock

    @property
    def down(self) -> bool:
        return self.state.started is not None

    def failed(self, exc: BaseException) -> None:
        event = self.state.on_failure(self._clock())
        if event is None:
            return
        cause = cause_of(exc)
        detail = str(cause).replace("\n", " ")[:MESSAGE_CHARS]
        if event == "start":
            log.warning("%s unavailable (%s: %s)", self.name, type(cause).__name__, detail)
        else:
            log.warning(
                "%s still unavailable after %.0f s, %d failed calls (%s: %s)",
                self.name,
                self._clock() - (self.state.started or 0.0),
                self.state.failures,
                type(cause).__name__,
                detail,
            )

    def succeeded(self) -> None:
        lasted = self.state.on_success(self._clock())
        if lasted is not None:
            log.info("%s available again after %.1f s", self.name, lasted)
