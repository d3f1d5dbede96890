"""One tick: observe, decide (pure), apply. Shared by the kopf handlers, simulate and the tests."""

from __future__ import annotations

from datetime import datetime

from finserve.contracts.telemetry import span as trace_span

from .apply import apply
from .core.actions import Decision
from .core.autoscale import decide_scaling
from .core.decide import decide
from .observe import observe_pools, observe_rollout
from .ports import EventSink, ObjectRef, Ports
from .spec import ModelRolloutSpec
from .status import RolloutStatus


async def rollout_tick(
    spec: ModelRolloutSpec,
    status: RolloutStatus,
    ref: ObjectRef,
    ports: Ports,
    events: EventSink,
    now: datetime,
) -> Decision:
    """The caller records ``decision.status`` only after this returns: actions first, then status.

    One trace per tick (no-op while tracing is off): its Prometheus queries are child spans."""
    attributes = {
        "k8s.namespace.name": ref.namespace,
        "finserve.rollout": ref.name,
        "finserve.phase": str(getattr(status.phase, "value", status.phase)),
    }
    with trace_span("finserve.rollout.tick", tracer_name="finserve.operator", attributes=attributes) as span:
        observations = await observe_rollout(spec, status, ref, ports, now)
        decision = decide(spec, status, observations, now)
        await apply(decision.actions, ref, ports, events)
        span.set_attribute(
            "finserve.next_phase", str(getattr(decision.status.phase, "value", decision.status.phase))
        )
        return decision


async def scaling_tick(
    spec: ModelRolloutSpec,
    status: RolloutStatus,
    ref: ObjectRef,
    ports: Ports,
    events: EventSink,
    now: datetime,
) -> Decision:
    observations = await observe_pools(spec, ref, ports)
    decision = decide_scaling(spec, status, observations, now)
    await apply(decision.actions, ref, ports, events)
    return decision
