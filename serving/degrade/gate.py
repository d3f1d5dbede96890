"""Whether the generator stage can take a request now: a circuit breaker opened by a dead replica (pure).

Ray Serve queues a DeploymentHandle call until a replica can take it; while the Generator's only replica is
dead and its replacement not yet started, calls wait (up to the request's deadline) before the fallback
answers. The gate notices instead: the errors a dead or unreachable replica raises, or a handle that sees no
running replica, open it; while open, generation is refused at once (the pipeline answers with the fallback
or the route's 503). It closes when a readiness probe of the stage succeeds (a replacement replica is up and
has loaded its model) or a call that was already under way succeeds. Probes run outside any request, one
at a time; the clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Ray's actor errors for a replica that died or cannot be reached (ray.exceptions; matched by name so this
# module imports nothing of Ray). BackPressureError is not one: a full queue is refused at once already.
REPLICA_GONE = frozenset({"ActorDiedError", "ActorUnavailableError", "RayActorError"})


def replica_gone(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps: Ray Serve re-raises with ``__cause__``, RayTaskError carries
    ``cause``) says the replica that ran the call died or is unreachable."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(
            cls.__name__ in REPLICA_GONE and cls.__module__.startswith("ray") for cls in type(current).__mro__
        ):
            return True
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else current.__cause__
    return False


class StageGate:
    """Closed: calls go through. Open: calls are refused; one probe at a time, ``probe_interval_s`` apart,
    decides when it closes. Single-threaded use (one event loop)."""

    def __init__(self, probe_interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.probe_interval_s = probe_interval_s
        self._clock = clock
        self._opened_at: float | None = None
        self.last_open_s = 0.0  # how long the last open spell lasted (for the recovery log line)
        self._next_probe = 0.0
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def open_for_s(self) -> float:
        """Seconds the gate has been open (0 when closed)."""
        return 0.0 if self._opened_at is None else self._clock() - self._opened_at

    def admit(self, replicas: int | None) -> tuple[bool, bool]:
        """(admitted, just_opened) for a call, given the running replicas the caller's handle sees
        (None: it cannot tell). No replica at all opens the gate before the call would queue."""
        if self._opened_at is None and replicas == 0:
            self._open()
            return False, True
        return self._opened_at is None, False

    def no_replica(self) -> bool:
        """A waiting call's handle sees no replica at all: open. True when that opened the gate."""
        if self._opened_at is not None:
            return False
        self._open()
        return True

    def failed(self, exc: BaseException) -> bool:
        """Note a call's failure; True when it opened the gate (only a replica that is gone does)."""
        if self._opened_at is not None or not replica_gone(exc):
            return False
        self._open()
        return True

    def succeeded(self) -> bool:
        """A call answered (it was under way when the gate opened, or went to a live replica): close.
        True when that closed an open gate."""
        return self._close()

    def probe_wait_s(self) -> float | None:
        """Seconds until the next probe may start (0: now), or None when none is due (closed or probing)."""
        if self._opened_at is None or self._probing:
            return None
        return max(0.0, self._next_probe - self._clock())

    def probe_started(self) -> None:
        self._probing = True

    def probe_finished(self, ok: bool) -> bool:
        """The probe's outcome; True when it closed the gate. A failed one is repeated after the interval."""
        self._probing = False
        if ok:
            return self._close()
        self._next_probe = self._clock() + self.probe_interval_s
        return False

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._next_probe = self._opened_at  # probe at once: it waits in the queue for the replacement

    def _close(self) -> bool:
        if self._opened_at is None:
            return False
        self.last_open_s = self._clock() - self._opened_at
        self._opened_at = None
        return True
