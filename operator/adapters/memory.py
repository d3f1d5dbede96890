"""In-memory adapters: the routing table, events and workloads without a cluster (simulate, tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from finserve.contracts import Route, RoutingTable

from ..ports import WorkloadState
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
