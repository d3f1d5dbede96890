"""``finserve rollout simulate``: the real decision core on a virtual clock, metrics from a timeline.

The timeline file::

    series:
      error-rate: [{at: 0s, value: 0.01}, {at: 12m, value: 0.2}]
      requests: [{at: 0s, value: 500}]          # optional: the sample-size guard
    commands: [{at: 20m, command: pause}]        # optional: manual control

A metric's value at time t is its last point at or before t; before its first point, or for a
point with ``value: null``, there is no data; ``error: TEXT`` makes the metric source fail.
Without a ``requests`` series every check has exactly ``minRequests`` requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from finserve.contracts import StrictModel
from pydantic import Field, field_validator

from .adapters.memory import InMemoryRouteStore, InMemoryWorkloads, ListEventSink
from .api import COMMAND_PREFIX
from .core.observations import Reading
from .durations import Duration, seconds
from .ports import ObjectRef, Ports
from .spec import ModelRolloutSpec
from .status import RolloutStatus
from .tick import rollout_tick

START = datetime(2025, 1, 1, tzinfo=UTC)
"""The virtual clock's origin: fixed, so a simulation prints the same lines every run."""


class Point(StrictModel):
    """One point of a series."""

    at: Duration = Field(description="Offset from the start of the simulation.")
    value: float | None = Field(None, description="The metric's value from here on; null: no data.")
    error: str | None = Field(None, description="From here on the metric source fails with this text.")

    @property
    def seconds(self) -> float:
        return seconds(self.at)


class Command(StrictModel):
    """A manual command issued at a time, as the annotation would be."""

    at: Duration = Field(description="Offset from the start of the simulation.")
    command: Literal["abort", "promote", "pause", "resume"] = Field(description="The command.")


class Timeline(StrictModel):
    """Metric values over time, and optional commands."""

    series: dict[str, list[Point]] = Field(description="Metric name (or 'requests') -> points.")
    commands: list[Command] = Field(default_factory=list, description="Commands in time order.")

    @field_validator("series")
    @classmethod
    def _sorted(cls, v: dict[str, list[Point]]) -> dict[str, list[Point]]:
        return {name: sorted(points, key=lambda p: p.seconds) for name, points in v.items()}

    def reading(self, name: str, t: float) -> Reading | None:
        """The reading of a series at t; None when the timeline has no such series."""
        points = self.series.get(name)
        if points is None:
            return None
        current = [p for p in points if p.seconds <= t]
        if not current:
            return Reading()
        last = current[-1]
        return Reading(error=last.error) if last.error is not None else Reading(value=last.value)

    def annotations(self, t: float) -> tuple[tuple[str, str], ...]:
        latest: dict[str, str] = {}
        for c in self.commands:
            if seconds(c.at) <= t:
                latest[COMMAND_PREFIX + c.command] = c.at
        return tuple(sorted(latest.items()))

    def next_command_after(self, t: float) -> float | None:
        later = [seconds(c.at) for c in self.commands if seconds(c.at) > t]
        return min(later) if later else None


class TimelineSource:
    """MetricsSource reading the timeline at the virtual clock's time."""

    def __init__(self, timeline: Timeline, clock: Callable[[], float], min_requests: int) -> None:
        self.timeline = timeline
        self.clock = clock
        self.min_requests = min_requests

    async def query(self, name: str, promql: str) -> Reading:
        reading = self.timeline.reading(name, self.clock())
        if reading is not None:
            return reading
        return Reading(value=float(self.min_requests)) if name == "requests" else Reading()


def load_rollout(data: dict[str, Any]) -> tuple[str, ModelRolloutSpec]:
    """(name, spec) from a ModelRollout manifest, or from a bare spec."""
    if "spec" in data:
        return str(data.get("metadata", {}).get("name", "rollout")), ModelRolloutSpec.model_validate(
            data["spec"]
        )
    return "rollout", ModelRolloutSpec.model_validate(data)


def _t(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 3)


async def simulate(
    name: str, spec: ModelRolloutSpec, timeline: Timeline, max_seconds: float = 86400.0
) -> AsyncIterator[dict[str, Any]]:
    """Yield one line per analysis tick, then ``{"result": PHASE}``."""
    elapsed = 0.0
    source = TimelineSource(timeline, lambda: elapsed, spec.strategy.analysis.min_requests)
    ports = Ports(metrics=source, routes=InMemoryRouteStore(), workloads=InMemoryWorkloads())
    status, events = RolloutStatus(), ListEventSink()
    while True:
        now = START + timedelta(seconds=elapsed)
        ref = ObjectRef(
            namespace="simulation", name=name, generation=1, annotations=timeline.annotations(elapsed)
        )
        decision = await rollout_tick(spec, status, ref, ports, events, now)
        status = decision.status
        record = status.last_analysis
        if record is not None and record.time == now:
            yield {
                "t": _t(elapsed),
                "phase": str(status.phase),
                "step": status.current_step_index,
                "canaryWeight": status.canary_weight,
                "failedChecks": status.failed_checks,
                "outcome": str(record.outcome),
            }
        # Wake for the next check or the next command, whichever is first (the operator notices a
        # command within FINSERVE_OPERATOR_POLL_SECONDS; the simulation at the command's time).
        upcoming = None if status.terminal else timeline.next_command_after(elapsed)
        waits = [
            w
            for w in (decision.requeue_after, None if upcoming is None else upcoming - elapsed)
            if w is not None
        ]
        if not waits:  # finished, or paused with no command to come
            break
        wait = min(waits)
        if elapsed + wait > max_seconds:
            break
        elapsed += wait
    yield {"result": str(status.phase)}
