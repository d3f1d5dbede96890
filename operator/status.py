"""The ModelRollout status as typed models: the only place the operator keeps state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from .spec import CamelModel


class Phase(StrEnum):
    INITIALIZING = "Initializing"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ABORTED = "Aborted"


TERMINAL = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED})


class Outcome(StrEnum):
    """Argo Rollouts' four analysis outcomes."""

    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"  # not enough data: wait
    ERROR = "Error"  # the metric source is down: not the canary's fault


class MetricResult(CamelModel):
    """One metric's value and verdict in one check."""

    name: str = Field(description="Metric name from the spec.")
    value: float | None = Field(None, description="Measured value; absent when there was no data.")
    outcome: Outcome = Field(description="This metric's verdict.")
    message: str = Field("", description="Why, in words (bounds, no data, source error).")


class AnalysisRecord(CamelModel):
    """The latest check: when, at which step, the sample size and every metric."""

    time: datetime = Field(description="When the check ran.")
    step_index: int = Field(ge=0, description="Step the canary was at.")
    outcome: Outcome = Field(description="Overall verdict.")
    requests: float | None = Field(None, description="Canary requests in the interval (sample size).")
    message: str = Field("", description="Summary in words.")
    metrics: list[MetricResult] = Field(default_factory=list, description="Per-metric results.")


class Condition(CamelModel):
    """A Kubernetes-style condition."""

    type: str = Field(description="Condition type, e.g. Ready, AnalysisHealthy.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason.")
    message: str = Field("", description="Human-readable detail.")
    last_transition_time: datetime = Field(description="When status last changed.")


class Recommendation(CamelModel):
    """One autoscaling recommendation, kept for the stabilization windows."""

    time: datetime = Field(description="When it was computed.")
    replicas: int = Field(ge=0, description="Recommended replicas before stabilization.")


class PoolStatus(CamelModel):
    """Autoscaling state of one generator pool."""

    pool: Literal["shared", "stable", "canary"] = Field(description="Which pool.")
    workload: str = Field(description="Kind/name of the pool's workload.")
    managed: bool = Field(description="Whether finserve sets this pool's replicas.")
    reason: str = Field(description="Why (Scaled, Stable, ConflictingAutoscaler, WorkloadNotFound, ...).")
    message: str = Field("", description="Detail in words.")
    current_replicas: int | None = Field(None, description="Replicas observed.")
    desired_replicas: int | None = Field(None, description="Replicas set (or recommended) now.")
    gpu_utilization: float | None = Field(None, description="Average GPU utilization observed, percent.")
    queue_depth: float | None = Field(None, description="Average queue depth observed.")
    recommendations: list[Recommendation] = Field(
        default_factory=list, description="Recent recommendations inside the stabilization windows."
    )


class RolloutStatus(CamelModel):
    """Everything the operator knows about one rollout; it resumes from this after a restart."""

    phase: Phase | None = Field(None, description="Lifecycle phase.")
    current_step_index: int = Field(0, ge=0, description="Index into spec.strategy.steps.")
    steps_hash: str | None = Field(None, description="Hash of the rollout plan; a change restarts it.")
    canary_weight: int = Field(0, ge=0, le=100, description="Percent of traffic on the canary now.")
    stable: str | None = Field(None, description="Stable adapter routed now (NAME@VERSION).")
    canary: str | None = Field(None, description="Canary adapter routed now (NAME@VERSION).")
    failed_checks: int = Field(0, ge=0, description="Consecutive failed checks.")
    successful_checks: int = Field(0, ge=0, description="Consecutive successful checks at this step.")
    observed_generation: int | None = Field(None, description="metadata.generation last acted on.")
    step_started_at: datetime | None = Field(None, description="When the current step began.")
    last_analysis_at: datetime | None = Field(None, description="When the last check ran.")
    last_analysis: AnalysisRecord | None = Field(None, description="The last check's evidence.")
    handled_commands: dict[str, str] = Field(
        default_factory=dict, description="Command annotation -> the value last acted on."
    )
    replicas: list[PoolStatus] = Field(default_factory=list, description="Autoscaling per pool.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, AnalysisHealthy.")
    message: str = Field("", description="What is happening, in words.")

    @classmethod
    def from_wire(cls, status: dict[str, Any] | None) -> RolloutStatus:
        """Parse an object's status; keys this version does not know are dropped, not fatal."""
        known = {f.alias or name for name, f in cls.model_fields.items()}
        return cls.model_validate({k: v for k, v in (status or {}).items() if k in known})

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL
