"""The narrow interfaces the rollout loop talks through; adapters/ has the real ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from finserve.contracts import Route

from .core.actions import RunEvaluation
from .core.observations import JobObservation, Reading
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


class EvaluationJobs(Protocol):
    def unavailable(self) -> str | None:
        """Why no evaluation Job can be created here (no Job template, say); None when one can."""
        ...

    async def observe(self, namespace: str, name: str) -> JobObservation:
        """The Job's state, with the report from its pod's termination message once it succeeded."""
        ...

    async def run(self, namespace: str, action: RunEvaluation, owner: ObjectRef) -> None:
        """Create the Job unless it exists (same name: nothing happens)."""
        ...

    async def delete(self, namespace: str, name: str) -> None:
        """Delete the Job and its pods; a missing Job is fine."""
        ...


class NoEvaluationJobs:
    """The Jobs port where none is configured: every evaluation is an Error that says so."""

    def __init__(self, reason: str = "no evaluation Job template is configured") -> None:
        self.reason = reason

    def unavailable(self) -> str | None:
        return self.reason

    async def observe(self, namespace: str, name: str) -> JobObservation:
        return JobObservation(name=name, state="Absent")

    async def run(self, namespace: str, action: RunEvaluation, owner: ObjectRef) -> None:
        raise RuntimeError(self.reason)

    async def delete(self, namespace: str, name: str) -> None:
        return None


class EventSink(Protocol):
    def emit(self, type: Literal["Normal", "Warning"], reason: str, message: str) -> None: ...


@dataclass(frozen=True)
class Ports:
    """Everything a tick needs from the world besides the object itself."""

    metrics: MetricsSource
    routes: RouteStore
    workloads: Workloads
    jobs: EvaluationJobs = field(default_factory=NoEvaluationJobs)


@dataclass(frozen=True)
class ObjectRef:
    """The ModelRollout a tick is about."""

    namespace: str
    name: str
    generation: int | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    uid: str | None = None  # owner of the Jobs a rollout creates (garbage-collected with it)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"
