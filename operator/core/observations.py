"""What the operator saw this tick: command annotations, metric readings, pool state."""

from __future__ import annotations

from typing import Literal

from finserve.contracts import StrictModel
from pydantic import Field

from ..spec import WorkloadRef


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


class Observations(StrictModel):
    """Inputs to :func:`decide` besides spec, status and time."""

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


class PoolObservation(StrictModel):
    """One generator pool as seen now."""

    pool: Literal["shared", "stable", "canary"] = Field(description="Which pool.")
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
