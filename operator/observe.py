"""Gather a tick's observations through the ports: the only reads the rollout loop makes."""

from __future__ import annotations

import asyncio
from datetime import datetime

from .api import COMMAND_PREFIX, COMMANDS
from .core.observations import (
    AnalysisObservation,
    Observations,
    PoolObservation,
    Reading,
    ScalingObservations,
)
from .core.plan import analysis_due
from .durations import promql_range
from .ports import ObjectRef, Ports
from .queries import GPU_UTILIZATION_QUERY, QUEUE_DEPTH_QUERY, REQUESTS_QUERY, render
from .spec import Autoscaling, ModelRolloutSpec, WorkloadRef
from .status import Phase, PoolName, RolloutStatus

SHADOW_SAMPLES = "shadow-samples"
"""Name of the shadow phase's sample-size reading (the live analysis calls its own "requests")."""


def commands(ref: ObjectRef) -> dict[str, str]:
    annotations = dict(ref.annotations)
    return {c: annotations[COMMAND_PREFIX + c] for c in COMMANDS if COMMAND_PREFIX + c in annotations}


def template_values(spec: ModelRolloutSpec, ref: ObjectRef) -> dict[str, str]:
    return {
        "model": spec.model,
        "adapter": spec.canary.adapter,
        "version": spec.canary.version,
        "namespace": ref.namespace,
        "rollout": ref.name,
        "interval": promql_range(spec.strategy.analysis.interval_seconds),
    }


async def measure(
    spec: ModelRolloutSpec, ref: ObjectRef, ports: Ports, shadow: bool = False
) -> AnalysisObservation:
    """Every metric of one check (live, or the shadow phase's), queried concurrently."""
    analysis = spec.strategy.analysis
    guard = "requests"
    if shadow and spec.strategy.shadow is not None:
        analysis, guard = spec.strategy.shadow.as_analysis(analysis), SHADOW_SAMPLES
    values = template_values(spec, ref)
    names = [guard, *(c.name for c in analysis.metrics)]
    queries = [analysis.requests_query or REQUESTS_QUERY, *(c.resolved_query() for c in analysis.metrics)]
    readings = await asyncio.gather(
        *(ports.metrics.query(n, render(q, values)) for n, q in zip(names, queries, strict=True))
    )
    return AnalysisObservation(requests=readings[0], metrics=dict(zip(names[1:], readings[1:], strict=True)))


async def observe_rollout(
    spec: ModelRolloutSpec, status: RolloutStatus, ref: ObjectRef, ports: Ports, now: datetime
) -> Observations:
    analysis = None
    if analysis_due(spec, status, now):
        analysis = await measure(spec, ref, ports, shadow=status.phase == Phase.SHADOWING)
    job, unavailable = None, None
    record = status.evaluation
    if status.phase == Phase.EVALUATING and record is not None and record.running:
        job = await ports.jobs.observe(ref.namespace, record.job)
    if spec.strategy.evaluation is not None:
        unavailable = ports.jobs.unavailable()
    canary_ready = None
    scaling = spec.autoscaling
    if scaling is not None and scaling.canary_target is not None:
        state = await ports.workloads.observe(ref.namespace, scaling.canary_target)
        canary_ready = None if state.ready is None else state.ready > 0
    return Observations(
        rollout=ref.name,
        generation=ref.generation,
        commands=commands(ref),
        analysis=analysis,
        canary_ready=canary_ready,
        evaluation=job,
        evaluation_unavailable=unavailable,
    )


def pools_of(spec: ModelRolloutSpec) -> list[tuple[PoolName, WorkloadRef]]:
    scaling = spec.autoscaling
    if scaling is None:
        return []
    if scaling.canary_target is None:
        return [("shared", scaling.target)]
    return [("stable", scaling.target), ("canary", scaling.canary_target)]


async def _pool(
    scaling: Autoscaling, ref: ObjectRef, ports: Ports, pool: PoolName, target: WorkloadRef
) -> PoolObservation:
    values = {"namespace": ref.namespace, "workload": target.name, "pool": target.name}
    state = await ports.workloads.observe(ref.namespace, target)
    gpu = await ports.metrics.query(
        f"{pool}:gpu", render(scaling.gpu_utilization_query or GPU_UTILIZATION_QUERY, values)
    )
    queue: Reading | None = None
    if scaling.target_queue_depth is not None:
        queue = await ports.metrics.query(
            f"{pool}:queue", render(scaling.queue_depth_query or QUEUE_DEPTH_QUERY, values)
        )
    return PoolObservation(
        pool=pool,
        workload=target,
        current_replicas=state.replicas,
        ready_replicas=state.ready,
        gpu_utilization=gpu,
        queue_depth=queue,
        conflict=state.conflict,
    )


async def observe_pools(spec: ModelRolloutSpec, ref: ObjectRef, ports: Ports) -> ScalingObservations:
    scaling = spec.autoscaling
    if scaling is None:
        return ScalingObservations()
    pools = await asyncio.gather(
        *(_pool(scaling, ref, ports, pool, target) for pool, target in pools_of(spec))
    )
    return ScalingObservations(pools=list(pools))
