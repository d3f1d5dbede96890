"""decide(): named table cases (Argo Rollouts style). One row: a spec, a status, what was observed
and when; the expected phase, step, weight, counters, route, events and requeue."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from finserve.operator.core.actions import EmitEvent, SetRoute
from finserve.operator.core.decide import decide, invalid
from finserve.operator.core.observations import AnalysisObservation, Observations
from finserve.operator.core.plan import steps_hash
from finserve.operator.spec import ModelRolloutSpec
from finserve.operator.status import Phase, RolloutStatus
from mro_testkit import T0, at, make_spec, readings, running

DEFAULT = make_spec()
QUICK = make_spec(
    {"steps": [5, 25, 50, 100], "stepInterval": "0s", "analysis": {"interval": "1m", "failureThreshold": 2}}
)
STRICT_NO_DATA = make_spec(
    {
        "analysis": {
            "metrics": [
                {"name": "error-rate"},
                {"name": "refusals", "query": "sum(x)", "max": 0.1, "onNoData": "fail"},
            ]
        }
    }
)


@dataclass
class Case:
    name: str
    spec: ModelRolloutSpec
    status: RolloutStatus
    now: datetime
    analysis: AnalysisObservation | None = None
    commands: dict[str, str] = field(default_factory=dict)
    canary_ready: bool | None = None
    expect: dict[str, Any] = field(default_factory=dict)
    route: tuple[str, str | None, int] | None = None  # (stable, canary, weight)
    events: list[str] = field(default_factory=list)
    requeue: float | None | str = "any"


CASES = [
    Case(
        "new rollout starts at the first step",
        DEFAULT,
        RolloutStatus(),
        T0,
        expect={
            "phase": Phase.PROGRESSING,
            "current_step_index": 0,
            "canary_weight": 5,
            "step_started_at": T0,
        },
        route=("banking77@1.0.0", "banking77@1.1.0", 5),
        events=["Progressing"],
        requeue=60.0,
    ),
    Case(
        "a dedicated canary pool with no ready replica holds Initializing",
        DEFAULT,
        RolloutStatus(),
        T0,
        canary_ready=False,
        expect={"phase": Phase.INITIALIZING, "canary_weight": 0},
        route=("banking77@1.0.0", "banking77@1.1.0", 0),
        events=[],
        requeue=1.0,
    ),
    Case(
        "no check before the interval",
        DEFAULT,
        running(DEFAULT),
        at(30),
        expect={"phase": Phase.PROGRESSING, "last_analysis": None},
        events=[],
        requeue=30.0,
    ),
    Case(
        "a check that is not due is not evaluated",
        DEFAULT,
        running(DEFAULT),
        at(30),
        analysis=readings(error_rate=0.9),
        expect={"failed_checks": 0, "last_analysis": None},
    ),
    Case(
        "a passing check holds the step until stepInterval",
        DEFAULT,
        running(DEFAULT),
        at(60),
        analysis=readings(),
        expect={"current_step_index": 0, "successful_checks": 1, "last_analysis_at": at(60)},
        events=[],
        requeue=60.0,
    ),
    Case(
        "passing checks after stepInterval advance one step",
        DEFAULT,
        running(DEFAULT, started=-300),
        at(0),
        analysis=readings(),
        expect={
            "current_step_index": 1,
            "canary_weight": 25,
            "successful_checks": 0,
            "step_started_at": at(0),
        },
        route=("banking77@1.0.0", "banking77@1.1.0", 25),
        events=["StepAdvanced"],
        requeue=60.0,
    ),
    Case(
        "successThreshold wants consecutive passes",
        make_spec({"stepInterval": "0s", "analysis": {"successThreshold": 3}}),
        running(make_spec({"stepInterval": "0s", "analysis": {"successThreshold": 3}}), successful_checks=1),
        at(60),
        analysis=readings(),
        expect={"current_step_index": 0, "successful_checks": 2},
    ),
    Case(
        "passing the last step promotes",
        QUICK,
        running(QUICK, step=3),
        at(60),
        analysis=readings(),
        expect={"phase": Phase.PROMOTING},
        route=("banking77@1.1.0", None, 0),
        events=["Promoting"],
        requeue=1.0,
    ),
    Case(
        "promoting completes the rollout",
        QUICK,
        running(QUICK, step=3, phase=Phase.PROMOTING),
        at(61),
        expect={"phase": Phase.SUCCEEDED, "canary_weight": 0, "stable": "banking77@1.1.0", "canary": None},
        route=("banking77@1.1.0", None, 0),
        events=["Promoted"],
        requeue=None,
    ),
    Case(
        "one failure below the threshold keeps going",
        QUICK,
        running(QUICK, step=1),
        at(60),
        analysis=readings(error_rate=0.3),
        expect={"phase": Phase.PROGRESSING, "failed_checks": 1, "canary_weight": 25},
        events=[],
    ),
    Case(
        "failures at the threshold roll back",
        QUICK,
        running(QUICK, step=2, failed_checks=1),
        at(60),
        analysis=readings(error_rate=0.3),
        expect={"phase": Phase.FAILED, "canary_weight": 0, "failed_checks": 2, "canary": None},
        route=("banking77@1.0.0", None, 0),
        events=["RolledBack"],
        requeue=None,
    ),
    Case(
        "a pass resets the consecutive failures",
        QUICK,
        running(QUICK, failed_checks=1),
        at(60),
        analysis=readings(),
        expect={"failed_checks": 0},
        events=["StepAdvanced"],
    ),
    Case(
        "too few requests are inconclusive, never a failure",
        QUICK,
        running(QUICK, failed_checks=1),
        at(60),
        analysis=readings(requests=5, error_rate=0.9),
        expect={"phase": Phase.PROGRESSING, "failed_checks": 1, "current_step_index": 0},
    ),
    Case(
        "no data is inconclusive by default",
        QUICK,
        running(QUICK),
        at(60),
        analysis=readings(latency_p95=None),
        expect={"failed_checks": 0, "current_step_index": 0},
    ),
    Case(
        "no data fails a metric with onNoData fail",
        STRICT_NO_DATA,
        running(STRICT_NO_DATA),
        at(60),
        analysis=AnalysisObservation(
            requests=readings().requests,
            metrics={
                "error-rate": readings().metrics["error-rate"],
                "refusals": readings(refusals=None).metrics["refusals"],
            },
        ),
        expect={"failed_checks": 1},
    ),
    Case(
        "a metric source error is not the canary's failure",
        QUICK,
        running(QUICK, failed_checks=1),
        at(60),
        analysis=readings(requests="connection refused"),
        expect={"failed_checks": 1, "phase": Phase.PROGRESSING},
    ),
    Case(
        "a failing metric counts even while another source errs",
        QUICK,
        running(QUICK),
        at(60),
        analysis=readings(error_rate=0.4, latency_p95="timeout"),
        expect={"failed_checks": 1},
    ),
    Case(
        "pause holds the weight and stops ticking",
        QUICK,
        running(QUICK, step=1),
        at(10),
        commands={"pause": "t1"},
        expect={"phase": Phase.PAUSED, "canary_weight": 25, "handled_commands": {"pause": "t1"}},
        route=("banking77@1.0.0", "banking77@1.1.0", 25),
        events=["Paused"],
        requeue=None,
    ),
    Case(
        "a paused rollout runs no check",
        QUICK,
        running(QUICK, phase=Phase.PAUSED, handled_commands={"pause": "t1"}),
        at(120),
        analysis=readings(error_rate=0.9),
        commands={"pause": "t1"},
        expect={"phase": Phase.PAUSED, "failed_checks": 0},
        events=[],
        requeue=None,
    ),
    Case(
        "resume restarts the step's clock and its passes",
        QUICK,
        running(QUICK, phase=Phase.PAUSED, successful_checks=2, handled_commands={"pause": "t1"}),
        at(500),
        commands={"pause": "t1", "resume": "t2"},
        expect={
            "phase": Phase.PROGRESSING,
            "step_started_at": at(500),
            "successful_checks": 0,
            "handled_commands": {"pause": "t1", "resume": "t2"},
        },
        events=["Resumed"],
        requeue=60.0,
    ),
    Case(
        "a command value already handled does not fire again",
        QUICK,
        running(QUICK, handled_commands={"abort": "t1"}),
        at(10),
        commands={"abort": "t1"},
        expect={"phase": Phase.PROGRESSING},
        events=[],
    ),
    Case(
        "abort sends everything back to stable",
        QUICK,
        running(QUICK, step=2),
        at(10),
        commands={"abort": "t1"},
        expect={"phase": Phase.ABORTED, "canary_weight": 0},
        route=("banking77@1.0.0", None, 0),
        events=["Aborted"],
        requeue=None,
    ),
    Case(
        "abort wins over promote",
        QUICK,
        running(QUICK, step=2),
        at(10),
        commands={"promote": "t1", "abort": "t1"},
        expect={"phase": Phase.ABORTED},
        events=["Aborted", "CommandIgnored"],
    ),
    Case(
        "promote skips the remaining steps",
        QUICK,
        running(QUICK),
        at(10),
        commands={"promote": "t1"},
        expect={"phase": Phase.PROMOTING},
        route=("banking77@1.1.0", None, 0),
        events=["PromotedByCommand"],
        requeue=1.0,
    ),
    Case(
        "commands on a finished rollout are recorded and ignored",
        QUICK,
        running(QUICK, phase=Phase.SUCCEEDED),
        at(10),
        commands={"abort": "t1"},
        expect={"phase": Phase.SUCCEEDED, "handled_commands": {"abort": "t1"}},
        route=("banking77@1.1.0", None, 0),
        events=["CommandIgnored"],
        requeue=None,
    ),
    Case(
        "a spec edit restarts from the first step",
        QUICK,
        running(QUICK, step=2, steps_hash="an-older-plan", failed_checks=1, handled_commands={"pause": "t1"}),
        at(10),
        commands={"pause": "t1"},
        expect={
            "phase": Phase.PROGRESSING,
            "current_step_index": 0,
            "canary_weight": 5,
            "failed_checks": 0,
            "steps_hash": steps_hash(QUICK),
            "handled_commands": {"pause": "t1"},
        },
        route=("banking77@1.0.0", "banking77@1.1.0", 5),
        events=["Restarted", "Progressing"],
    ),
    Case(
        "a failed rollout keeps stable routing and waits for an edit",
        QUICK,
        running(QUICK, phase=Phase.FAILED),
        at(10),
        analysis=readings(),
        expect={"phase": Phase.FAILED},
        route=("banking77@1.0.0", None, 0),
        events=[],
        requeue=None,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decide(case: Case):
    obs = Observations(
        generation=7, commands=case.commands, analysis=case.analysis, canary_ready=case.canary_ready
    )
    decision = decide(case.spec, case.status, obs, case.now)
    got = decision.status
    for key, value in case.expect.items():
        assert getattr(got, key) == value, key
    assert got.observed_generation == 7
    routes = [a for a in decision.actions if isinstance(a, SetRoute)]
    assert len(routes) == 1, "every decision carries exactly one absolute route"
    if case.route is not None:
        route = routes[0].route
        assert (
            str(route.stable),
            str(route.canary) if route.canary else None,
            route.canary_weight,
        ) == case.route
    assert [a.reason for a in decision.actions if isinstance(a, EmitEvent)] == case.events
    if case.requeue != "any":
        assert decision.requeue_after == case.requeue


def test_rollback_event_carries_the_evidence():
    spec = QUICK
    decision = decide(
        spec, running(spec, failed_checks=1), Observations(analysis=readings(error_rate=0.31)), at(60)
    )
    (event,) = [a for a in decision.actions if isinstance(a, EmitEvent)]
    assert event.type == "Warning"
    assert "error-rate=0.31" in event.message and "> max 0.05" in event.message
    assert "latency-p95=0.8" in event.message  # every metric's value, not only the failing one
    record = decision.status.last_analysis
    assert record is not None and record.outcome == "Failed" and record.requests == 100


def test_conditions_report_analysis_health():
    spec = QUICK
    source_down = decide(spec, running(spec), Observations(analysis=readings(requests="down")), at(60)).status
    cond = {c.type: c for c in source_down.conditions}
    assert (cond["AnalysisHealthy"].status, cond["AnalysisHealthy"].reason) == (
        "Unknown",
        "MetricSourceError",
    )
    assert (cond["Ready"].status, cond["Valid"].status) == ("Unknown", "True")
    few = decide(spec, running(spec), Observations(analysis=readings(requests=3)), at(60)).status
    assert {c.type: c.reason for c in few.conditions}["AnalysisHealthy"] == "NotEnoughData"


def test_condition_transition_time_moves_only_on_change():
    spec = QUICK
    first = decide(spec, running(spec), Observations(analysis=readings()), at(60)).status
    second = decide(spec, first, Observations(analysis=readings()), at(120)).status
    healthy = {c.type: c for c in second.conditions}["AnalysisHealthy"]
    assert healthy.last_transition_time == at(60)
    third = decide(spec, second, Observations(analysis=readings(error_rate=0.5)), at(180)).status
    assert {c.type: c for c in third.conditions}["AnalysisHealthy"].last_transition_time == at(180)


def test_steps_hash_ignores_autoscaling_but_not_the_plan():
    autoscaled = make_spec(autoscaling={"maxReplicas": 4, "target": {"kind": "Deployment", "name": "gen"}})
    assert steps_hash(autoscaled) == steps_hash(DEFAULT)
    assert steps_hash(make_spec({"steps": [10, 100]})) != steps_hash(DEFAULT)
    assert steps_hash(make_spec(canary={"adapter": "banking77", "version": "1.2.0"})) != steps_hash(DEFAULT)


def test_invalid_spec_is_reported_and_a_running_rollout_keeps_its_phase():
    fresh = invalid(RolloutStatus(), "spec.canary: same as stable", 3, T0)
    assert fresh.phase == Phase.FAILED and fresh.observed_generation == 3
    assert {c.type: (c.status, c.reason) for c in fresh.conditions}["Valid"] == ("False", "InvalidSpec")
    midway = invalid(running(DEFAULT, step=2), "bad", 4, T0)
    assert midway.phase == Phase.PROGRESSING and midway.canary_weight == 50
    assert "invalid spec: bad" in midway.message
