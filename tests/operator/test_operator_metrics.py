"""The operator's rollout gauges (finserve.operator.metrics) on a real prometheus_client registry.

The kopf wiring test in test_handlers.py scrapes them from a running operator; these cases cover
what a short rollout there does not reach: an edited model name, a second rollout, forgetting one.
"""

from __future__ import annotations

from finserve.contracts import metrics as names
from finserve.operator.metrics import RolloutMetrics
from finserve.operator.status import Phase, RolloutStatus


def phase_values(metrics: RolloutMetrics, name: str, model: str) -> dict[str, float | None]:
    labels = {"rollout_namespace": "ns", "rollout": name, "model": model}
    get = metrics.registry.get_sample_value
    return {p.value: get(names.ROLLOUT_PHASE, {**labels, "phase": p.value}) for p in Phase}


def weight(metrics: RolloutMetrics, name: str, model: str) -> float | None:
    labels = {"rollout_namespace": "ns", "rollout": name, "model": model}
    return metrics.registry.get_sample_value(names.ROLLOUT_CANARY_WEIGHT, labels)


def test_the_current_phase_is_one_and_every_other_phase_zero():
    metrics = RolloutMetrics()
    metrics.record("ns", "r", "m", RolloutStatus(phase=Phase.PROGRESSING, canary_weight=25))
    assert phase_values(metrics, "r", "m") == {p.value: float(p == Phase.PROGRESSING) for p in Phase}
    assert weight(metrics, "r", "m") == 25
    metrics.record("ns", "r", "m", RolloutStatus(phase=Phase.FAILED, canary_weight=0))
    assert phase_values(metrics, "r", "m") == {p.value: float(p == Phase.FAILED) for p in Phase}
    assert weight(metrics, "r", "m") == 0


def test_an_edited_model_name_leaves_no_series_under_the_old_one():
    metrics = RolloutMetrics()
    metrics.record("ns", "r", "old", RolloutStatus(phase=Phase.PROGRESSING, canary_weight=50))
    metrics.record("ns", "r", "new", RolloutStatus(phase=Phase.INITIALIZING, canary_weight=0))
    assert set(phase_values(metrics, "r", "old").values()) == {None}
    assert weight(metrics, "r", "old") is None
    assert phase_values(metrics, "r", "new")[Phase.INITIALIZING.value] == 1
    assert weight(metrics, "r", "new") == 0


def test_forgetting_a_rollout_removes_only_its_series():
    metrics = RolloutMetrics()
    metrics.record("ns", "a", "m", RolloutStatus(phase=Phase.SUCCEEDED, canary_weight=0))
    metrics.record("ns", "b", "m", RolloutStatus(phase=Phase.PAUSED, canary_weight=5))
    metrics.forget("ns", "a")
    metrics.forget("ns", "never-seen")  # a rollout deleted before its first reconcile
    assert set(phase_values(metrics, "a", "m").values()) == {None}
    assert weight(metrics, "a", "m") is None
    assert phase_values(metrics, "b", "m")[Phase.PAUSED.value] == 1
    assert weight(metrics, "b", "m") == 5
