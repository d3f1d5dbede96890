"""What a decision asks the world to do: absolute, idempotent actions, and the Decision itself."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from finserve.contracts import AdapterRef, Route, StrictModel

from ..spec import GoldenSet, WorkloadRef
from ..status import EvaluationStage, RolloutStatus


class SetRoute(StrictModel):
    """Make the routing table's entry for a model exactly this route."""

    kind: Literal["SetRoute"] = Field("SetRoute", description="Action type.")
    model: str = Field(description="Client-facing model name (the routing table key).")
    route: Route = Field(description="The whole route, absolute weights.")


class Scale(StrictModel):
    """Set a pool workload's replicas to an absolute number."""

    kind: Literal["Scale"] = Field("Scale", description="Action type.")
    workload: WorkloadRef = Field(description="The workload to scale.")
    replicas: int = Field(ge=0, description="Replicas to set.")


class EmitEvent(StrictModel):
    """A Kubernetes Event on the ModelRollout."""

    kind: Literal["Event"] = Field("Event", description="Action type.")
    type: Literal["Normal", "Warning"] = Field(description="Event type.")
    reason: str = Field(description="CamelCase reason.")
    message: str = Field(description="What happened, with the evidence.")


class RunEvaluation(StrictModel):
    """Make sure an evaluation Job of this name exists (creating one that exists is a no-op)."""

    kind: Literal["RunEvaluation"] = Field("RunEvaluation", description="Action type.")
    job: str = Field(description="Job name, derived from rollout, plan, stage and attempt.")
    stage: EvaluationStage = Field(description="Which gate the Job serves.")
    candidate: AdapterRef = Field(description="The canary version (--adapter).")
    baseline: AdapterRef = Field(description="The stable version (--baseline).")
    golden_set: GoldenSet = Field(description="Where the golden set comes from.")
    timeout_seconds: float = Field(gt=0, description="The Job's activeDeadlineSeconds.")


class DeleteEvaluation(StrictModel):
    """Stop and remove an evaluation Job (deleting one that is gone is a no-op)."""

    kind: Literal["DeleteEvaluation"] = Field("DeleteEvaluation", description="Action type.")
    job: str = Field(description="Job name.")


Action = Annotated[
    SetRoute | Scale | EmitEvent | RunEvaluation | DeleteEvaluation, Field(discriminator="kind")
]


class Decision(StrictModel):
    """The new status, the actions to apply first, and when to look again."""

    status: RolloutStatus = Field(description="Status to record once the actions are applied.")
    actions: list[Action] = Field(default_factory=list, description="Actions, in order.")
    requeue_after: float | None = Field(
        None, description="Seconds until the next tick is useful; None: wait for a change."
    )
