"""The narrow interfaces the rollout loop talks through; adapters/ has the real ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from finserve.contracts import Route

from .core.observations import Reading
from .spec import WorkloadRef


class MetricsSource(Protocol):
    async def query(self, name: str, promql: str) -> Reading:
        """One PromQL query to one number; ``name`` says which check asks (logs, fakes)."""
        ...


class RouteStore(Protocol):
    async def set_route(self, namespace: str, model: str, route: Route) -> bool:
        """Make the namespace's routing table hold exactly this route; True if it changed."""
        ...


@dataclass(frozen=True)
class WorkloadState:
    """A pool workload as seen now."""

    replicas: int | None  # None: the workload does not exist
    ready: int | None  # None: unknown for this kind
    conflict: str | None  # another autoscaler that scales it, e.g. "HorizontalPodAutoscaler/gen"


class Workloads(Protocol):
    async def observe(self, namespace: str, ref: WorkloadRef) -> WorkloadState: ...

    async def scale(self, namespace: str, ref: WorkloadRef, replicas: int) -> None: ...


class EventSink(Protocol):
    def emit(self, type: Literal["Normal", "Warning"], reason: str, message: str) -> None: ...


@dataclass(frozen=True)
class Ports:
    """Everything a tick needs from the world besides the object itself."""

    metrics: MetricsSource
    routes: RouteStore
    workloads: Workloads


@dataclass(frozen=True)
class ObjectRef:
    """The ModelRollout a tick is about."""

    namespace: str
    name: str
    generation: int | None = None
    annotations: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"
