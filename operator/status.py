"""The ModelRollout status as typed models: the only place the operator keeps state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from finserve.contracts.evaluation import AnswerEvalReport

from .spec import CamelModel

AnalysisKind = Literal["Live", "Shadow"]
ConditionStatus = Literal["True", "False", "Unknown"]
PoolName = Literal["shared", "stable", "canary"]


class Phase(StrEnum):
    INITIALIZING = "Initializing"
    EVALUATING = "Evaluating"  # an evaluation Job runs; the weight holds
    SHADOWING = "Shadowing"  # 0 % live traffic, a sample of stable's requests mirrored to the canary
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

    kind: AnalysisKind = Field(
        "Live", description="Live: the canary's own traffic; Shadow: its answers to mirrored requests."
    )
    time: datetime = Field(description="When the check ran.")
    step_index: int = Field(ge=0, description="Step the canary was at.")
    outcome: Outcome = Field(description="Overall verdict.")
    requests: float | None = Field(None, description="Canary requests in the interval (sample size).")
    message: str = Field("", description="Summary in words.")
    metrics: list[MetricResult] = Field(default_factory=list, description="Per-metric results.")


class EvaluationStage(StrEnum):
    BEFORE_TRAFFIC = "BeforeTraffic"
    BEFORE_PROMOTION = "BeforePromotion"


class GateCheckResult(CamelModel):
    """One gate check against the evaluation report."""

    metric: str = Field(description="Report metric.")
    candidate: float | None = Field(None, description="The canary's value.")
    baseline: float | None = Field(None, description="Stable's value on the same rows.")
    outcome: Outcome = Field(description="Successful, Failed or Error (the report lacks the figure).")
    message: str = Field("", description="The comparison in words.")


class EvaluationStatus(CamelModel):
    """The latest evaluation Job: which gate, which Job, and once finished its outcome and figures."""

    stage: EvaluationStage = Field(description="BeforeTraffic or BeforePromotion.")
    job: str = Field(description="Name of the evaluation Job (same namespace).")
    attempt: int = Field(1, ge=1, description="1 for the first Job of this gate, more after retries.")
    started_at: datetime = Field(description="When the Job was created.")
    finished_at: datetime | None = Field(None, description="When the outcome was decided.")
    outcome: Outcome | None = Field(
        None,
        description="Successful, Failed (a margin missed) or Error (Job failed, timed out, no report); "
        "absent while the Job runs.",
    )
    message: str = Field("", description="What happened, in words.")
    checks: list[GateCheckResult] = Field(default_factory=list, description="Each gate check.")
    report: AnswerEvalReport | None = Field(
        None, description="The Job's report summary (finserve.contracts.evaluation, as the Job wrote it)."
    )

    @property
    def running(self) -> bool:
        """The Job has no verdict yet and the rollout still waits for one."""
        return self.outcome is None and self.finished_at is None


class Condition(CamelModel):
    """A Kubernetes-style condition."""

    type: str = Field(description="Condition type, e.g. Ready, AnalysisHealthy.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason.")
    message: str = Field("", description="Human-readable detail.")
    last_transition_time: datetime = Field(description="When status last changed.")


class Recommendation(CamelModel):
    """One autoscaling recommendation, kept for the stabilization windows."""

    time: datetime = Field(description="When it was computed.")
    replicas: int = Field(ge=0, description="Recommended replicas before stabilization.")


class PoolStatus(CamelModel):
    """Autoscaling state of one generator pool."""

    pool: PoolName = Field(description="Which pool.")
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
    shadow_percent: float = Field(
        0.0, ge=0, le=100, description="Percent of stable's requests mirrored to the canary now."
    )
    evaluation: EvaluationStatus | None = Field(None, description="The latest evaluation gate.")
    paused_from: Phase | None = Field(None, description="The phase a resume returns to.")
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
