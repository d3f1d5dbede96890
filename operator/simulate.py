"""``finserve rollout simulate``: the real decision core on a virtual clock, metrics from a timeline.

The timeline file::

    series:
      error-rate: [{at: 0s, value: 0.01}, {at: 12m, value: 0.2}]
      requests: [{at: 0s, value: 500}]          # optional: the sample-size guard
    commands: [{at: 20m, command: pause}]        # optional: manual control
    evaluations:                                 # optional: one per evaluation Job, in order
      - {after: 4m, outcome: succeeded, candidate: {answer_accuracy: 0.86}}
      - {after: 2m, outcome: failed, reason: BackoffLimitExceeded}

A metric's value at time t is its last point at or before t; before its first point, or for a
point with ``value: null``, there is no data; ``error: TEXT`` makes the metric source fail.
Without a ``requests`` series every check has exactly ``minRequests`` requests (the shadow phase's
``shadow-samples`` likewise has ``minSamples``). The n-th evaluation Job the rollout creates ends as
the n-th entry says, ``after`` its creation; a Job without an entry never finishes (it times out).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, field_validator

from finserve.contracts import StrictModel
from finserve.contracts.evaluation import AnswerEvalReport, AnswerMetrics

from .adapters.memory import InMemoryRouteStore, InMemoryWorkloads, ListEventSink
from .api import COMMAND_PREFIX
from .core.actions import RunEvaluation
from .core.observations import JobObservation, Reading
from .durations import Duration, seconds
from .observe import SHADOW_SAMPLES
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


_FIGURES: dict[str, float] = {
    "answer_accuracy": 0.84,
    "groundedness": 0.93,
    "truncated_rate": 0.02,
    "repetition_rate": 0.01,
    "pii_leaks": 0,
}


class EvaluationResult(StrictModel):
    """How one evaluation Job ends."""

    after: Duration = Field("5m", description="How long the Job runs.")
    outcome: Literal["succeeded", "failed"] = Field(description="succeeded (with a report) or failed.")
    reason: str = Field(
        "BackoffLimitExceeded", description="A failed Job's reason (DeadlineExceeded: it timed out)."
    )
    rows: int = Field(200, ge=0, description="Rows each version answered.")
    candidate: dict[str, float] = Field(
        default_factory=dict, description="The canary's figures (defaults: stable's) by report metric."
    )
    baseline: dict[str, float] = Field(default_factory=dict, description="Stable's figures by report metric.")

    def report(self, action: RunEvaluation) -> AnswerEvalReport:
        def metrics(adapter: str, figures: dict[str, float]) -> AnswerMetrics:
            return AnswerMetrics.model_validate(
                {"adapter": adapter, "rows": self.rows, **_FIGURES, **figures}
            )

        return AnswerEvalReport(
            dataset="simulation",
            candidate=metrics(str(action.candidate), {**self.baseline, **self.candidate}),
            baseline=metrics(str(action.baseline), self.baseline),
            groundedness_threshold=0.6,
            seconds=seconds(self.after),
        )


class Timeline(StrictModel):
    """Metric values over time, optional commands and evaluation results."""

    series: dict[str, list[Point]] = Field(description="Metric name (or 'requests') -> points.")
    commands: list[Command] = Field(default_factory=list, description="Commands in time order.")
    evaluations: list[EvaluationResult] = Field(
        default_factory=list, description="How each evaluation Job ends, in the order they are created."
    )

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

    def __init__(
        self, timeline: Timeline, clock: Callable[[], float], min_requests: int, min_samples: int = 0
    ) -> None:
        self.timeline = timeline
        self.clock = clock
        self.guards = {"requests": float(min_requests), SHADOW_SAMPLES: float(min_samples)}

    async def query(self, name: str, promql: str) -> Reading:
        reading = self.timeline.reading(name, self.clock())
        if reading is not None:
            return reading
        return Reading(value=self.guards[name]) if name in self.guards else Reading()


class TimelineJobs:
    """Evaluation Jobs that end as the timeline says, on the virtual clock."""

    def __init__(self, timeline: Timeline, clock: Callable[[], float]) -> None:
        self.timeline = timeline
        self.clock = clock
        self.jobs: dict[str, tuple[float, int, RunEvaluation]] = {}

    def unavailable(self) -> str | None:
        return None

    async def run(self, namespace: str, action: RunEvaluation, owner: ObjectRef) -> None:
        if action.job not in self.jobs:
            self.jobs[action.job] = (self.clock(), len(self.jobs), action)

    async def delete(self, namespace: str, name: str) -> None:
        self.jobs.pop(name, None)

    async def observe(self, namespace: str, name: str) -> JobObservation:
        if name not in self.jobs:
            return JobObservation(name=name, state="Absent")
        created, index, action = self.jobs[name]
        results = self.timeline.evaluations
        if index >= len(results) or self.clock() - created < seconds(results[index].after):
            return JobObservation(name=name, state="Running")
        result = results[index]
        if result.outcome == "failed":
            return JobObservation(name=name, state="Failed", reason=result.reason)
        return JobObservation(name=name, state="Succeeded", report=result.report(action))


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
    """Yield one line per analysis check and per evaluation verdict, then ``{"result": PHASE}``."""
    elapsed = 0.0
    shadow = spec.strategy.shadow
    source = TimelineSource(
        timeline, lambda: elapsed, spec.strategy.analysis.min_requests, shadow.min_samples if shadow else 0
    )
    ports = Ports(
        metrics=source,
        routes=InMemoryRouteStore(),
        workloads=InMemoryWorkloads(),
        jobs=TimelineJobs(timeline, lambda: elapsed),
    )
    status, events, seen = RolloutStatus(), ListEventSink(), 0
    while True:
        now = START + timedelta(seconds=elapsed)
        ref = ObjectRef(
            namespace="simulation", name=name, generation=1, annotations=timeline.annotations(elapsed)
        )
        decision = await rollout_tick(spec, status, ref, ports, events, now)
        status = decision.status
        for event in events.events[seen:]:
            if event.reason == "EvaluationRetried":  # the record is replaced by the next attempt's
                yield {
                    "t": _t(elapsed),
                    "phase": str(status.phase),
                    "event": event.reason,
                    "message": event.message,
                }
        seen = len(events.events)
        record = status.last_analysis
        if record is not None and record.time == now:
            line: dict[str, Any] = {
                "t": _t(elapsed),
                "phase": str(status.phase),
                "step": status.current_step_index,
                "canaryWeight": status.canary_weight,
                "failedChecks": status.failed_checks,
                "outcome": str(record.outcome),
            }
            if record.kind == "Shadow":
                line["kind"] = "Shadow"
            yield line
        gate = status.evaluation
        if gate is not None and gate.finished_at == now and gate.outcome is not None:
            yield {
                "t": _t(elapsed),
                "phase": str(status.phase),
                "canaryWeight": status.canary_weight,
                "evaluation": str(gate.stage),
                "attempt": gate.attempt,
                "outcome": str(gate.outcome),
                "message": gate.message,
            }
        # Wake for the next check or the next command, whichever is first (the operator notices a
        # command within FINSERVE_OPERATOR__POLL_SECONDS; the simulation at the command's time).
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
