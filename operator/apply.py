"""Carry out a decision's actions through the ports, in order."""

from __future__ import annotations

from .core.actions import Action, DeleteEvaluation, EmitEvent, RunEvaluation, Scale, SetRoute
from .ports import EventSink, ObjectRef, Ports


async def apply(actions: list[Action], ref: ObjectRef, ports: Ports, events: EventSink) -> None:
    for action in actions:
        if isinstance(action, SetRoute):
            route = action.route.model_copy(update={"rollout": ref.key})
            await ports.routes.set_route(ref.namespace, action.model, route)
        elif isinstance(action, Scale):
            await ports.workloads.scale(ref.namespace, action.workload, action.replicas)
        elif isinstance(action, RunEvaluation):
            await ports.jobs.run(ref.namespace, action, ref)
        elif isinstance(action, DeleteEvaluation):
            await ports.jobs.delete(ref.namespace, action.job)
        elif isinstance(action, EmitEvent):
            events.emit(action.type, action.reason, action.message)
