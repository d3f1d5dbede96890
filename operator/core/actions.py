"""What a decision asks the world to do: absolute, idempotent actions, and the Decision itself."""

from __future__ import annotations

from typing import Annotated, Literal

from finserve.contracts import Route, StrictModel
from pydantic import Field

from ..spec import WorkloadRef
from ..status import RolloutStatus


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


Action = Annotated[SetRoute | Scale | EmitEvent, Field(discriminator="kind")]


class Decision(StrictModel):
    """The new status, the actions to apply first, and when to look again."""

    status: RolloutStatus = Field(description="Status to record once the actions are applied.")
    actions: list[Action] = Field(default_factory=list, description="Actions, in order.")
    requeue_after: float | None = Field(
        None, description="Seconds until the next tick is useful; None: wait for a change."
    )
