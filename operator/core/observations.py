"""What the operator saw this tick: command annotations, metric readings, pool state."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from finserve.contracts import StrictModel
from finserve.contracts.evaluation import AnswerEvalReport

from ..spec import WorkloadRef
from ..status import PoolName


class Reading(StrictModel):
    """One query's answer: a number, no data (empty or NaN), or a source error."""

    value: float | None = Field(None, description="The value; None when the query returned no data.")
    error: str | None = Field(None, description="Why the source could not answer (down, bad query).")

    @property
    def ok(self) -> bool:
        return self.error is None


class AnalysisObservation(StrictModel):
    """Readings for one analysis check of the canary."""

    requests: Reading = Field(description="Canary requests in the interval (the sample-size guard).")
    metrics: dict[str, Reading] = Field(description="Metric name -> reading.")


class JobObservation(StrictModel):
    """An evaluation Job as seen now, with the report its pod left in the termination message."""

    name: str = Field(description="Job name.")
    state: Literal["Absent", "Running", "Succeeded", "Failed"] = Field(
        description="Absent (not created, or deleted), Running (incl. pending), Succeeded, Failed."
    )
    reason: str | None = Field(
        None, description="The Job's Failed condition reason, e.g. DeadlineExceeded, BackoffLimitExceeded."
    )
    message: str = Field("", description="Condition message, or why the pod waits (e.g. ImagePullBackOff).")
    report: AnswerEvalReport | None = Field(None, description="The report, parsed, when the Job succeeded.")
    report_error: str | None = Field(
        None, description="Why a succeeded Job has no usable report (no termination message, bad JSON)."
    )


class Observations(StrictModel):
    """Inputs to :func:`decide` besides spec, status and time."""

    rollout: str = Field("", description="metadata.name of the object (names the Jobs it creates).")
    generation: int | None = Field(None, description="metadata.generation of the object.")
    commands: dict[str, str] = Field(
        default_factory=dict, description="Command (abort, promote, pause, resume) -> annotation value."
    )
    analysis: AnalysisObservation | None = Field(
        None, description="Readings, present only on ticks where a check was due."
    )
    canary_ready: bool | None = Field(
        None, description="Dedicated canary pool has a ready replica; None when not applicable."
    )
    evaluation: JobObservation | None = Field(
        None, description="The evaluation Job named in status, while one runs."
    )
    evaluation_unavailable: str | None = Field(
        None, description="Why evaluation Jobs cannot be created here (e.g. no Job template configured)."
    )


class PoolObservation(StrictModel):
    """One generator pool as seen now."""

    pool: PoolName = Field(description="Which pool.")
    workload: WorkloadRef = Field(description="The pool's workload.")
    current_replicas: int | None = Field(None, description="Replicas now; None when the workload is missing.")
    ready_replicas: int | None = Field(None, description="Ready replicas now, when known.")
    gpu_utilization: Reading = Field(description="Average GPU utilization, percent.")
    queue_depth: Reading | None = Field(None, description="Average queue depth; None when not targeted.")
    conflict: str | None = Field(
        None, description="Another controller scaling this workload (HPA, KEDA, Ray autoscaler), if any."
    )


class ScalingObservations(StrictModel):
    """Inputs to :func:`decide_scaling`."""

    pools: list[PoolObservation] = Field(default_factory=list, description="One entry per pool.")
