"""In-memory adapters: the routing table, events, workloads and evaluation Jobs without a cluster
(simulate, tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from finserve.contracts import Route, RoutingTable
from finserve.contracts.evaluation import AnswerEvalReport

from ..core.actions import RunEvaluation
from ..core.observations import JobObservation
from ..ports import ObjectRef, WorkloadState
from ..spec import WorkloadRef


class InMemoryRouteStore:
    """One routing table per namespace, with the same no-op-on-equal rule as the ConfigMap store."""

    def __init__(self) -> None:
        self.tables: dict[str, RoutingTable] = {}

    async def set_route(self, namespace: str, model: str, route: Route) -> bool:
        table = self.tables.get(namespace, RoutingTable())
        if table.routes.get(model) == route:
            return False
        self.tables[namespace] = table.with_route(model, route)
        return True

    def route(self, namespace: str, model: str) -> Route | None:
        table = self.tables.get(namespace)
        return table.routes.get(model) if table is not None else None


@dataclass
class RecordedEvent:
    type: str
    reason: str
    message: str


@dataclass
class ListEventSink:
    events: list[RecordedEvent] = field(default_factory=list)

    def emit(self, type: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(RecordedEvent(type, reason, message))

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]


class InMemoryWorkloads:
    """Workloads as a dict of states; scale() sets replicas (all ready)."""

    def __init__(self, states: dict[str, WorkloadState] | None = None) -> None:
        self.states: dict[str, WorkloadState] = dict(states or {})
        self.scaled: list[tuple[str, int]] = []

    async def observe(self, namespace: str, ref: WorkloadRef) -> WorkloadState:
        return self.states.get(str(ref), WorkloadState(replicas=None, ready=None, conflict=None))

    async def scale(self, namespace: str, ref: WorkloadRef, replicas: int) -> None:
        old = self.states.get(str(ref), WorkloadState(replicas=None, ready=None, conflict=None))
        self.states[str(ref)] = WorkloadState(replicas=replicas, ready=replicas, conflict=old.conflict)
        self.scaled.append((str(ref), replicas))


class InMemoryJobs:
    """Evaluation Jobs as a dict of observations; tests and the simulation decide how each ends."""

    def __init__(self, unavailable: str | None = None) -> None:
        self.jobs: dict[str, JobObservation] = {}
        self.created: list[RunEvaluation] = []
        self.deleted: list[str] = []
        self._unavailable = unavailable

    def unavailable(self) -> str | None:
        return self._unavailable

    async def observe(self, namespace: str, name: str) -> JobObservation:
        return self.jobs.get(name, JobObservation(name=name, state="Absent"))

    async def run(self, namespace: str, action: RunEvaluation, owner: ObjectRef) -> None:
        if action.job not in self.jobs:  # like the API server's AlreadyExists: no second Job
            self.jobs[action.job] = JobObservation(name=action.job, state="Running")
            self.created.append(action)

    async def delete(self, namespace: str, name: str) -> None:
        if self.jobs.pop(name, None) is not None:
            self.deleted.append(name)

    def succeed(self, name: str, report: AnswerEvalReport | None, report_error: str | None = None) -> None:
        self.jobs[name] = JobObservation(
            name=name, state="Succeeded", report=report, report_error=report_error
        )

    def fail(self, name: str, reason: str = "BackoffLimitExceeded", message: str = "") -> None:
        self.jobs[name] = JobObservation(name=name, state="Failed", reason=reason, message=message)
