"""decide_scaling(spec, status, observations, now) -> Decision: generator pool replicas, pure.

The Kubernetes HPA's algorithm: per metric ``ceil(current * value / target)`` unless the ratio is
within a 10% tolerance, the highest recommendation across metrics, stabilization windows over the
recommendation history (kept in status), then clamped to [minReplicas, maxReplicas]. A pool that
another autoscaler (HPA, KEDA, Ray's) already scales is left alone and reported.
"""

from __future__ import annotations

import math
from datetime import datetime

from ..durations import seconds
from ..spec import Autoscaling, ModelRolloutSpec
from ..status import TERMINAL, PoolStatus, Recommendation, RolloutStatus
from .actions import Action, Decision, Scale
from .observations import PoolObservation, ScalingObservations

TOLERANCE = 0.1
MAX_HISTORY = 60


def metric_recommendation(current: int, value: float, target: float) -> int:
    """HPA's replica count for one metric; within the tolerance band the count stays."""
    ratio = value / target
    if abs(ratio - 1.0) <= TOLERANCE:
        return current
    return math.ceil(current * ratio)


def stabilize(
    current: int,
    recommended: int,
    history: list[Recommendation],
    now: datetime,
    up_window: float,
    down_window: float,
) -> int:
    """HPA's stabilization: scale up only as far as the window's lowest recommendation,
    down only as far as its highest, so a short spike or dip does not flap replicas."""
    up, down = recommended, recommended
    for rec in history:
        age = (now - rec.time).total_seconds()
        if age < up_window:
            up = min(up, rec.replicas)
        if age < down_window:
            down = max(down, rec.replicas)
    return min(max(current, up), down)


def _floor(policy: Autoscaling, status: RolloutStatus, obs: PoolObservation) -> tuple[int, int | None]:
    """(lowest allowed, forced count or None) for a pool given the rollout's phase."""
    if obs.pool != "canary":
        return policy.min_replicas, None
    if status.phase is None or status.phase in TERMINAL:
        return 0, 0  # no canary traffic: the dedicated canary pool goes to zero
    return max(policy.min_replicas, 1), None  # canary traffic needs at least one replica


def _history(prev: PoolStatus | None, now: datetime, keep: float) -> list[Recommendation]:
    if prev is None:
        return []
    return [r for r in prev.recommendations if (now - r.time).total_seconds() < keep][-MAX_HISTORY:]


def _pool(
    policy: Autoscaling,
    status: RolloutStatus,
    obs: PoolObservation,
    prev: PoolStatus | None,
    now: datetime,
    actions: list[Action],
) -> PoolStatus:
    base = PoolStatus(
        pool=obs.pool,
        workload=str(obs.workload),
        managed=False,
        reason="",
        current_replicas=obs.current_replicas,
        gpu_utilization=obs.gpu_utilization.value,
        queue_depth=obs.queue_depth.value if obs.queue_depth is not None else None,
    )
    if obs.conflict is not None:
        return base.model_copy(
            update={
                "reason": "ConflictingAutoscaler",
                "message": f"{obs.conflict} scales {obs.workload}: finserve leaves its replicas alone",
            }
        )
    if obs.current_replicas is None:
        return base.model_copy(update={"reason": "WorkloadNotFound", "message": f"{obs.workload} not found"})
    current = obs.current_replicas
    lowest, forced = _floor(policy, status, obs)
    if forced is not None:
        return _apply(base, obs, current, forced, [], "the rollout is over", actions)
    readings = [(obs.gpu_utilization, policy.target_gpu_utilization, "GPU utilization")]
    if policy.target_queue_depth is not None and obs.queue_depth is not None:
        readings.append((obs.queue_depth, policy.target_queue_depth, "queue depth"))
    missing = [name for reading, _, name in readings if reading.value is None or reading.error is not None]
    up_window = seconds(policy.scale_up_stabilization)
    down_window = seconds(policy.scale_down_stabilization)
    history = _history(prev, now, max(up_window, down_window))
    if missing:
        # Like the HPA: without the signal there is no basis to move, only to keep within bounds.
        target = min(max(current, lowest), policy.max_replicas)
        return _apply(
            base,
            obs,
            current,
            target,
            history,
            f"no {', '.join(missing)} reading: keeping replicas",
            actions,
            reason="MetricsUnavailable",
        )
    values = [(r.value or 0.0, t) for r, t, _ in readings]  # all present: checked above
    recommended = lowest if current == 0 else max(metric_recommendation(current, v, t) for v, t in values)
    stable = stabilize(current, recommended, history, now, up_window, down_window)
    target = min(max(stable, lowest), policy.max_replicas)
    history = (history + [Recommendation(time=now, replicas=recommended)])[-MAX_HISTORY:]
    why = f"recommended {recommended}, stabilized {stable}, bounds [{lowest}, {policy.max_replicas}]"
    return _apply(base, obs, current, target, history, why, actions)


def _apply(
    base: PoolStatus,
    obs: PoolObservation,
    current: int,
    target: int,
    history: list[Recommendation],
    why: str,
    actions: list[Action],
    reason: str | None = None,
) -> PoolStatus:
    if target != current:
        actions.append(Scale(workload=obs.workload, replicas=target))
    default = "ScaledUp" if target > current else "ScaledDown" if target < current else "Steady"
    return base.model_copy(
        update={
            "managed": True,
            "reason": reason or default,
            "message": why,
            "desired_replicas": target,
            "recommendations": history,
        }
    )


def decide_scaling(
    spec: ModelRolloutSpec, status: RolloutStatus, obs: ScalingObservations, now: datetime
) -> Decision:
    """New ``status.replicas`` and Scale actions; nothing else in the status changes."""
    policy = spec.autoscaling
    if policy is None:
        return Decision(status=status.model_copy(update={"replicas": []}))
    actions: list[Action] = []
    previous = {p.pool: p for p in status.replicas}
    pools = [_pool(policy, status, o, previous.get(o.pool), now, actions) for o in obs.pools]
    return Decision(status=status.model_copy(update={"replicas": pools}), actions=actions)
