"""decide_scaling(): the HPA formula with a tolerance band, stabilization windows kept in status,
min/max clamps, the dedicated canary pool's floor, and never fighting another autoscaler."""

from __future__ import annotations

import pytest
from mro_testkit import T0, at, make_spec

from finserve.operator.core.actions import Scale
from finserve.operator.core.autoscale import decide_scaling, metric_recommendation, stabilize
from finserve.operator.core.observations import PoolObservation, Reading, ScalingObservations
from finserve.operator.spec import WorkloadRef
from finserve.operator.status import Phase, PoolStatus, Recommendation, RolloutStatus

GEN = WorkloadRef(kind="Deployment", name="gen")
CANARY_GEN = WorkloadRef(kind="Deployment", name="gen-canary")


def spec(**autoscaling):
    policy = {
        "minReplicas": 1,
        "maxReplicas": 8,
        "targetGPUUtilization": 60,
        "scaleDownStabilization": "5m",
        "target": {"kind": "Deployment", "name": "gen"},
    }
    policy.update(autoscaling)
    return make_spec(autoscaling=policy)


def pool(current=2, gpu=60.0, queue=None, conflict=None, name="shared", workload=GEN):
    return PoolObservation(
        pool=name,
        workload=workload,
        current_replicas=current,
        gpu_utilization=Reading(value=gpu) if not isinstance(gpu, str) else Reading(error=gpu),
        queue_depth=None if queue is None else Reading(value=queue),
        conflict=conflict,
    )


def run(s, pools, status=None, now=T0):
    return decide_scaling(
        s, status or RolloutStatus(phase=Phase.PROGRESSING), ScalingObservations(pools=pools), now
    )


@pytest.mark.parametrize(
    ("current", "value", "target", "expected"),
    [
        (2, 90, 60, 3),
        (4, 65, 60, 4),
        (4, 54, 60, 4),
        (4, 50, 60, 4),
        (4, 30, 60, 2),
        (3, 100, 60, 5),
        (1, 61, 60, 1),
    ],
    ids=[
        "1.5x up",
        "within +10%",
        "within -10%",
        "just outside -10% rounds up",
        "half",
        "ceil",
        "tiny drift",
    ],
)
def test_hpa_formula(current, value, target, expected):
    assert metric_recommendation(current, value, target) == expected


def test_scale_up_sets_the_workload_replicas():
    decision = run(spec(), [pool(current=2, gpu=90)])
    assert decision.actions == [Scale(workload=GEN, replicas=3)]
    (p,) = decision.status.replicas
    assert (p.reason, p.desired_replicas, p.managed) == ("ScaledUp", 3, True)
    assert [r.replicas for r in p.recommendations] == [3]


def test_queue_depth_is_a_second_signal_and_the_highest_wins():
    decision = run(spec(targetQueueDepth=4), [pool(current=2, gpu=60, queue=10)])
    assert decision.actions == [Scale(workload=GEN, replicas=5)]


def test_clamped_to_max_and_min():
    assert run(spec(maxReplicas=4), [pool(current=3, gpu=100)]).actions == [Scale(workload=GEN, replicas=4)]
    down = run(spec(minReplicas=2, scaleDownStabilization="0s"), [pool(current=3, gpu=5)])
    assert down.actions == [Scale(workload=GEN, replicas=2)]


def test_scale_down_waits_for_the_window():
    s = spec()
    history = [Recommendation(time=at(-120), replicas=4)]
    status = RolloutStatus(
        phase=Phase.PROGRESSING,
        replicas=[
            PoolStatus(
                pool="shared",
                workload="Deployment/gen",
                managed=True,
                reason="Steady",
                recommendations=history,
            )
        ],
    )
    held = run(s, [pool(current=4, gpu=15)], status=status)
    assert held.actions == [] and held.status.replicas[0].reason == "Steady"
    later = run(s, [pool(current=4, gpu=15)], status=held.status, now=at(200))  # the 4 left the window
    assert later.actions == [Scale(workload=GEN, replicas=1)]


def test_stabilize_takes_the_window_extremes():
    recs = [Recommendation(time=at(-10), replicas=6), Recommendation(time=at(-400), replicas=9)]
    assert stabilize(8, 2, recs, T0, up_window=0, down_window=300) == 6  # down only to the window's highest
    assert stabilize(4, 2, recs, T0, up_window=0, down_window=300) == 4  # a window never scales up
    assert stabilize(4, 8, recs, T0, up_window=60, down_window=300) == 6  # up only to the window's lowest
    assert stabilize(8, 2, recs, T0, up_window=0, down_window=5) == 2  # outside every window: follow


def test_another_autoscaler_is_left_alone():
    decision = run(spec(), [pool(current=2, gpu=99, conflict="HorizontalPodAutoscaler/gen")])
    assert decision.actions == []
    (p,) = decision.status.replicas
    assert (p.managed, p.reason) == (False, "ConflictingAutoscaler")
    assert "HorizontalPodAutoscaler/gen" in p.message


def test_missing_metrics_keep_replicas():
    decision = run(spec(), [pool(current=3, gpu="prometheus down")])
    assert decision.actions == []
    assert decision.status.replicas[0].reason == "MetricsUnavailable"


def test_missing_workload_is_reported():
    decision = run(spec(), [pool(current=None)])
    assert decision.actions == [] and decision.status.replicas[0].reason == "WorkloadNotFound"


def test_dedicated_canary_pool_follows_the_rollout():
    s = spec(pool="dedicated", canaryTarget={"kind": "Deployment", "name": "gen-canary"}, minReplicas=0)
    canary = pool(current=0, gpu=None, name="canary", workload=CANARY_GEN)
    canary = canary.model_copy(update={"gpu_utilization": Reading()})  # no pods, no GPU metrics
    active = run(s, [canary], status=RolloutStatus(phase=Phase.PROGRESSING))
    assert active.actions == [Scale(workload=CANARY_GEN, replicas=1)]
    busy = pool(current=1, gpu=70, name="canary", workload=CANARY_GEN)
    finished = run(s, [busy], status=RolloutStatus(phase=Phase.SUCCEEDED))
    assert finished.actions == [Scale(workload=CANARY_GEN, replicas=0)]


def test_without_autoscaling_the_pool_status_is_cleared():
    status = RolloutStatus(
        replicas=[PoolStatus(pool="shared", workload="Deployment/gen", managed=True, reason="x")]
    )
    decision = decide_scaling(make_spec(), status, ScalingObservations(), T0)
    assert decision.status.replicas == [] and decision.actions == []
