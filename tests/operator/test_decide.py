"""decide(): named table cases (Argo Rollouts style). One row: a spec, a status, what was observed
and when; the expected phase, step, weight, counters, route, events and requeue."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from mro_testkit import (
    T0,
    at,
    evaluating,
    gated,
    make_spec,
    readings,
    report,
    running,
    shadow_readings,
)

from finserve.operator.core.actions import DeleteEvaluation, EmitEvent, RunEvaluation, SetRoute
from finserve.operator.core.decide import decide, invalid
from finserve.operator.core.observations import AnalysisObservation, JobObservation, Observations
from finserve.operator.core.plan import evaluation_job_name, steps_hash
from finserve.operator.spec import ModelRolloutSpec
from finserve.operator.status import EvaluationStage, Outcome, Phase, RolloutStatus

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
    job: JobObservation | None = None
    unavailable: str | None = None
    jobs: list[str] | None = None  # kinds of the Job actions, in order (None: not checked)
    shadow: float | None = None  # the route's shadow percent (None: not checked)
    evaluation: dict[str, Any] = field(default_factory=dict)  # expected status.evaluation fields


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
        "retry starts a failed rollout again from the first step, at 0 % until initialized",
        QUICK,
        running(
            QUICK,
            step=2,
            phase=Phase.FAILED,
            canary_weight=0,
            failed_checks=2,
            handled_commands={"abort": "t0"},
        ),
        at(10),
        commands={"retry": "t1", "abort": "t0"},
        expect={
            "phase": Phase.INITIALIZING,
            "current_step_index": 0,
            "canary_weight": 0,
            "failed_checks": 0,
            "handled_commands": {"abort": "t0", "retry": "t1"},
        },
        route=("banking77@1.0.0", "banking77@1.1.0", 0),
        events=["Retried"],
        requeue=1.0,
    ),
    Case(
        "retry of an aborted rollout starts it again too",
        QUICK,
        running(QUICK, step=1, phase=Phase.ABORTED, canary_weight=0),
        at(10),
        commands={"retry": "t1"},
        expect={"phase": Phase.INITIALIZING, "current_step_index": 0},
        events=["Retried"],
    ),
    Case(
        "retry of a running or succeeded rollout is recorded and ignored",
        QUICK,
        running(QUICK, step=1),
        at(10),
        commands={"retry": "t1"},
        expect={"phase": Phase.PROGRESSING, "current_step_index": 1, "handled_commands": {"retry": "t1"}},
        events=["CommandIgnored"],
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


GATED = make_spec({"steps": [5, 50, 100], "stepInterval": "0s", "evaluation": gated()})
RETRY = make_spec(
    {"steps": [5, 50, 100], "stepInterval": "0s", "evaluation": gated(onError="retry", retryLimit=1)}
)
SHADOWED = make_spec(
    {
        "steps": [5, 50, 100],
        "stepInterval": "0s",
        "shadow": {"percent": 10, "duration": "2m", "minSamples": 50},
    }
)
BOTH = make_spec(
    {
        "steps": [5, 100],
        "stepInterval": "0s",
        "evaluation": gated(),
        "shadow": {"percent": 20, "duration": "0s"},
    }
)
BT, BP = EvaluationStage.BEFORE_TRAFFIC, EvaluationStage.BEFORE_PROMOTION


def job(
    spec: ModelRolloutSpec, state: str = "Running", stage: EvaluationStage = BT, attempt: int = 1, **kw: Any
):
    return JobObservation(
        name=evaluation_job_name("bank", steps_hash(spec), stage, attempt), state=state, **kw
    )


GATE_CASES = [
    Case(
        "a gated rollout evaluates before any traffic moves",
        GATED,
        RolloutStatus(),
        T0,
        expect={"phase": Phase.EVALUATING, "canary_weight": 0},
        evaluation={"stage": BT, "attempt": 1, "outcome": None, "job": job(GATED).name},
        route=("banking77@1.0.0", "banking77@1.1.0", 0),
        events=["EvaluationStarted"],
        jobs=["RunEvaluation"],
        requeue=10.0,
    ),
    Case(
        "a running evaluation Job holds the weight at 0",
        GATED,
        evaluating(GATED),
        at(300),
        job=job(GATED, "Running"),
        expect={"phase": Phase.EVALUATING, "canary_weight": 0},
        evaluation={"outcome": None},
        route=("banking77@1.0.0", "banking77@1.1.0", 0),
        events=[],
        jobs=[],
        requeue=10.0,
    ),
    Case(
        "an evaluation passed before traffic opens the first step",
        GATED,
        evaluating(GATED),
        at(300),
        job=job(GATED, "Succeeded", report=report(answer_accuracy=0.837)),
        expect={
            "phase": Phase.PROGRESSING,
            "canary_weight": 5,
            "current_step_index": 0,
            "step_started_at": at(300),
        },
        evaluation={"outcome": Outcome.SUCCESSFUL, "finished_at": at(300)},
        route=("banking77@1.0.0", "banking77@1.1.0", 5),
        events=["EvaluationPassed", "Progressing"],
        jobs=[],
    ),
    Case(
        "a missed margin fails the rollout with the weight still at 0",
        GATED,
        evaluating(GATED),
        at(300),
        job=job(GATED, "Succeeded", report=report(answer_accuracy=0.81)),
        expect={"phase": Phase.FAILED, "canary_weight": 0},
        evaluation={"outcome": Outcome.FAILED},
        route=("banking77@1.0.0", None, 0),
        events=["EvaluationFailed"],
        requeue=None,
    ),
    Case(
        "an absolute bound missed fails too (pii_leaks max 0)",
        GATED,
        evaluating(GATED),
        at(300),
        job=job(GATED, "Succeeded", report=report(pii_leaks=1)),
        expect={"phase": Phase.FAILED},
        evaluation={"outcome": Outcome.FAILED},
        events=["EvaluationFailed"],
    ),
    Case(
        "a failed Job is an Error and onError fail fails the rollout",
        GATED,
        evaluating(GATED),
        at(300),
        job=job(GATED, "Failed", reason="BackoffLimitExceeded", message="Job has reached the backoff limit"),
        expect={"phase": Phase.FAILED, "canary_weight": 0},
        evaluation={"outcome": Outcome.ERROR},
        route=("banking77@1.0.0", None, 0),
        events=["EvaluationError"],
        jobs=[],
    ),
    Case(
        "a Job stopped at its deadline is a timed-out Error",
        GATED,
        evaluating(GATED),
        at(1800),
        job=job(GATED, "Failed", reason="DeadlineExceeded"),
        expect={"phase": Phase.FAILED},
        evaluation={"outcome": Outcome.ERROR},
        events=["EvaluationError"],
    ),
    Case(
        "a Job still running past timeout by the operator's clock is stopped: timed out",
        GATED,
        evaluating(GATED),
        at(1800 + 61),
        job=job(GATED, "Running"),
        expect={"phase": Phase.FAILED},
        evaluation={"outcome": Outcome.ERROR},
        events=["EvaluationError"],
        jobs=["DeleteEvaluation"],
    ),
    Case(
        "a succeeded Job without a report is an Error, never a pass",
        GATED,
        evaluating(GATED),
        at(300),
        job=job(GATED, "Succeeded", report_error="the pod left no termination message"),
        expect={"phase": Phase.FAILED, "canary_weight": 0},
        evaluation={"outcome": Outcome.ERROR},
        events=["EvaluationError"],
    ),
    Case(
        "a report with too few rows is an Error",
        GATED,
        evaluating(GATED),
        at(300),
        job=job(GATED, "Succeeded", report=report(rows=5)),
        expect={"phase": Phase.FAILED},
        evaluation={"outcome": Outcome.ERROR},
        events=["EvaluationError"],
    ),
    Case(
        "an Error with onError retry starts the next attempt under a new name",
        RETRY,
        evaluating(RETRY),
        at(300),
        job=job(RETRY, "Failed", reason="BackoffLimitExceeded"),
        expect={"phase": Phase.EVALUATING, "canary_weight": 0},
        evaluation={
            "attempt": 2,
            "outcome": None,
            "job": job(RETRY, stage=BT, attempt=2).name,
            "started_at": at(300),
        },
        events=["EvaluationRetried", "EvaluationStarted"],
        jobs=["RunEvaluation"],
    ),
    Case(
        "a missed margin is not retried: the canary is worse, not the Job broken",
        RETRY,
        evaluating(RETRY),
        at(300),
        job=job(RETRY, "Succeeded", report=report(groundedness=0.8)),
        expect={"phase": Phase.FAILED},
        evaluation={"outcome": Outcome.FAILED},
        events=["EvaluationFailed"],
    ),
    Case(
        "retries used up fail the rollout",
        RETRY,
        evaluating(RETRY, attempt=2),
        at(300),
        job=job(RETRY, "Failed", attempt=2, reason="DeadlineExceeded"),
        expect={"phase": Phase.FAILED},
        evaluation={"outcome": Outcome.ERROR, "attempt": 2},
        events=["EvaluationError"],
    ),
    Case(
        "a Job that vanished is created again under the same name",
        GATED,
        evaluating(GATED),
        at(60),
        job=job(GATED, "Absent"),
        expect={"phase": Phase.EVALUATING},
        evaluation={"outcome": None, "job": job(GATED).name},
        events=[],
        jobs=["RunEvaluation"],
    ),
    Case(
        "without a Job template the gate is an Error at once",
        GATED,
        RolloutStatus(),
        T0,
        unavailable="no evaluation Job template",
        expect={"phase": Phase.FAILED, "canary_weight": 0},
        evaluation={"outcome": Outcome.ERROR},
        route=("banking77@1.0.0", None, 0),
        events=["EvaluationError"],
        jobs=[],
    ),
    Case(
        "the last step waits for the before-promotion evaluation at the weight it has",
        GATED,
        running(GATED, step=1),
        at(60),
        analysis=readings(),
        expect={"phase": Phase.EVALUATING, "canary_weight": 50, "current_step_index": 1},
        evaluation={"stage": BP, "job": job(GATED, stage=BP).name},
        route=("banking77@1.0.0", "banking77@1.1.0", 50),
        events=["EvaluationStarted"],
        jobs=["RunEvaluation"],
    ),
    Case(
        "an evaluation passed before promotion routes the last step",
        GATED,
        evaluating(GATED, BP, step=1),
        at(120),
        job=job(GATED, "Succeeded", stage=BP, report=report()),
        expect={"phase": Phase.PROGRESSING, "canary_weight": 100, "current_step_index": 2},
        evaluation={"stage": BP, "outcome": Outcome.SUCCESSFUL},
        route=("banking77@1.0.0", "banking77@1.1.0", 100),
        events=["EvaluationPassed", "StepAdvanced"],
    ),
    Case(
        "a missed margin before promotion rolls back from 50 %",
        GATED,
        evaluating(GATED, BP, step=1),
        at(120),
        job=job(GATED, "Succeeded", stage=BP, report=report(answer_accuracy=0.8)),
        expect={"phase": Phase.FAILED, "canary_weight": 0},
        route=("banking77@1.0.0", None, 0),
        events=["EvaluationFailed"],
    ),
    Case(
        "live checks go on while the evaluation before promotion runs: passes only wait",
        GATED,
        evaluating(GATED, BP, step=1),
        at(60),
        analysis=readings(),
        job=job(GATED, "Running", stage=BP),
        expect={
            "phase": Phase.EVALUATING,
            "canary_weight": 50,
            "successful_checks": 1,
            "last_analysis_at": at(60),
        },
        events=[],
        jobs=[],
        requeue=10.0,
    ),
    Case(
        "a live failure at the threshold during the evaluation before promotion rolls back and stops the Job",
        GATED,
        evaluating(GATED, BP, step=1, failed_checks=1),
        at(60),
        analysis=readings(error_rate=0.4),
        job=job(GATED, "Running", stage=BP),
        expect={"phase": Phase.FAILED, "canary_weight": 0},
        evaluation={"outcome": None, "finished_at": at(60)},
        route=("banking77@1.0.0", None, 0),
        events=["RolledBack"],
        jobs=["DeleteEvaluation"],
    ),
    Case(
        "abort during an evaluation deletes its Job",
        GATED,
        evaluating(GATED),
        at(60),
        job=job(GATED, "Running"),
        commands={"abort": "t1"},
        expect={"phase": Phase.ABORTED},
        evaluation={"outcome": None, "finished_at": at(60)},
        events=["Aborted"],
        jobs=["DeleteEvaluation"],
    ),
    Case(
        "pause during an evaluation returns to it on resume",
        GATED,
        evaluating(GATED, phase=Phase.PAUSED, paused_from=Phase.EVALUATING, handled_commands={"pause": "t1"}),
        at(60),
        commands={"pause": "t1", "resume": "t2"},
        expect={"phase": Phase.EVALUATING, "paused_from": None},
        events=["Resumed"],
    ),
    Case(
        "shadow first: 0 % live traffic with mirroring on",
        SHADOWED,
        RolloutStatus(),
        T0,
        expect={"phase": Phase.SHADOWING, "canary_weight": 0, "shadow_percent": 10.0, "step_started_at": T0},
        route=("banking77@1.0.0", "banking77@1.1.0", 0),
        shadow=10.0,
        events=["Shadowing"],
        requeue=60.0,
    ),
    Case(
        "a passing shadow check holds until the shadow duration",
        SHADOWED,
        running(SHADOWED, phase=Phase.SHADOWING, canary_weight=0),
        at(60),
        analysis=shadow_readings(),
        expect={"phase": Phase.SHADOWING, "successful_checks": 1},
        shadow=10.0,
        events=[],
    ),
    Case(
        "shadow agreement after the duration starts live traffic, mirroring stays on",
        SHADOWED,
        running(SHADOWED, phase=Phase.SHADOWING, canary_weight=0, started=-120),
        at(0),
        analysis=shadow_readings(),
        expect={
            "phase": Phase.PROGRESSING,
            "canary_weight": 5,
            "step_started_at": at(0),
            "successful_checks": 0,
        },
        route=("banking77@1.0.0", "banking77@1.1.0", 5),
        shadow=10.0,
        events=["ShadowPassed", "Progressing"],
    ),
    Case(
        "too few shadow samples are inconclusive",
        SHADOWED,
        running(SHADOWED, phase=Phase.SHADOWING, canary_weight=0, started=-600, failed_checks=1),
        at(0),
        analysis=shadow_readings(samples=10, shadow_similarity=0.1),
        expect={"phase": Phase.SHADOWING, "failed_checks": 1},
        events=[],
    ),
    Case(
        "shadow disagreement at the threshold rolls back and stops mirroring",
        SHADOWED,
        running(SHADOWED, phase=Phase.SHADOWING, canary_weight=0, failed_checks=1),
        at(60),
        analysis=shadow_readings(shadow_similarity=0.42),
        expect={"phase": Phase.FAILED, "canary_weight": 0, "shadow_percent": 0.0},
        route=("banking77@1.0.0", None, 0),
        shadow=0.0,
        events=["ShadowFailed"],
    ),
    Case(
        "promotion stops mirroring",
        SHADOWED,
        running(SHADOWED, step=2, phase=Phase.PROMOTING),
        at(60),
        expect={"phase": Phase.SUCCEEDED, "shadow_percent": 0.0},
        route=("banking77@1.1.0", None, 0),
        shadow=0.0,
        events=["Promoted"],
    ),
    Case(
        "a live rollback stops mirroring",
        SHADOWED,
        running(SHADOWED, step=1, failed_checks=1),
        at(60),
        analysis=readings(error_rate=0.5),
        expect={"phase": Phase.FAILED, "shadow_percent": 0.0},
        shadow=0.0,
        events=["RolledBack"],
    ),
    Case(
        "abort stops mirroring",
        SHADOWED,
        running(SHADOWED, phase=Phase.SHADOWING, canary_weight=0),
        at(10),
        commands={"abort": "t1"},
        expect={"phase": Phase.ABORTED},
        shadow=0.0,
        events=["Aborted"],
    ),
    Case(
        "a paused shadow phase keeps mirroring and resumes into it",
        SHADOWED,
        running(
            SHADOWED,
            phase=Phase.PAUSED,
            paused_from=Phase.SHADOWING,
            canary_weight=0,
            handled_commands={"pause": "t1"},
        ),
        at(500),
        commands={"pause": "t1", "resume": "t2"},
        expect={"phase": Phase.SHADOWING, "step_started_at": at(500)},
        shadow=10.0,
        events=["Resumed"],
    ),
    Case(
        "the evaluation before traffic comes before the shadow phase",
        BOTH,
        evaluating(BOTH),
        at(300),
        job=job(BOTH, "Succeeded", report=report()),
        expect={"phase": Phase.SHADOWING, "canary_weight": 0},
        shadow=20.0,
        events=["EvaluationPassed", "Shadowing"],
    ),
    Case(
        "no mirroring while the evaluation before traffic runs",
        BOTH,
        RolloutStatus(),
        T0,
        expect={"phase": Phase.EVALUATING},
        shadow=0.0,
        events=["EvaluationStarted"],
    ),
]
CASES += GATE_CASES


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decide(case: Case):
    obs = Observations(
        rollout="bank",
        generation=7,
        commands=case.commands,
        analysis=case.analysis,
        canary_ready=case.canary_ready,
        evaluation=case.job,
        evaluation_unavailable=case.unavailable,
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
    if case.jobs is not None:
        assert [
            a.kind for a in decision.actions if isinstance(a, RunEvaluation | DeleteEvaluation)
        ] == case.jobs
    if case.shadow is not None:
        assert routes[0].route.shadow_percent == case.shadow
    for key, value in case.evaluation.items():
        assert got.evaluation is not None
        assert getattr(got.evaluation, key) == value, f"evaluation.{key}"


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


def test_the_gate_writes_figures_and_evidence():
    decision = decide(
        GATED,
        evaluating(GATED),
        Observations(rollout="bank", evaluation=job(GATED, "Succeeded", report=report(answer_accuracy=0.81))),
        at(300),
    )
    record = decision.status.evaluation
    assert record is not None and record.report is not None
    checks = {c.metric: c for c in record.checks}
    assert (checks["answer_accuracy"].candidate, checks["answer_accuracy"].baseline) == (0.81, 0.84)
    assert checks["answer_accuracy"].outcome == Outcome.FAILED
    assert checks["answer_accuracy"].message == "0.81 < stable 0.84 - 0.005"
    assert checks["groundedness"].outcome == Outcome.SUCCESSFUL
    (event,) = [a for a in decision.actions if isinstance(a, EmitEvent)]
    assert event.type == "Warning" and "answer_accuracy=0.81" in event.message
    cond = {c.type: c for c in decision.status.conditions}["EvaluationPassed"]
    assert (cond.status, cond.reason) == ("False", "MarginMissed")


def test_the_run_action_carries_what_the_job_needs():
    decision = decide(GATED, RolloutStatus(), Observations(rollout="bank"), T0)
    (run,) = [a for a in decision.actions if isinstance(a, RunEvaluation)]
    assert (str(run.candidate), str(run.baseline), run.timeout_seconds) == (
        "banking77@1.1.0",
        "banking77@1.0.0",
        1800,
    )
    assert run.golden_set.config_map is not None and run.golden_set.config_map.key == "golden.csv"
    assert run.job == evaluation_job_name("bank", steps_hash(GATED), BT, 1)


def test_job_names_are_stable_short_and_distinct():
    plan = steps_hash(GATED)
    name = evaluation_job_name("bank", plan, BT, 1)
    assert name == evaluation_job_name("bank", plan, BT, 1)  # a restarted operator finds its Job
    assert name.startswith("bank-eval-traffic-") and name.endswith("-1")
    others = {
        evaluation_job_name("bank", plan, BP, 1),
        evaluation_job_name("bank", plan, BT, 2),
        evaluation_job_name("bank", "other-plan", BT, 1),
        evaluation_job_name("card", plan, BT, 1),
    }
    assert name not in others and len(others) == 4
    long_a, long_b = (
        evaluation_job_name("a" * 200, plan, BP, 10),
        evaluation_job_name("a" * 199 + "b", plan, BP, 10),
    )
    assert len(long_a) <= 63 and len(long_b) <= 63 and long_a != long_b


def test_a_spec_edit_during_an_evaluation_deletes_its_job():
    status = evaluating(GATED, steps_hash="an-older-plan")
    old_job = evaluation_job_name("bank", "an-older-plan", BT, 1)
    status = status.model_copy(update={"evaluation": status.evaluation.model_copy(update={"job": old_job})})
    decision = decide(GATED, status, Observations(rollout="bank"), at(10))
    deleted = [a.job for a in decision.actions if isinstance(a, DeleteEvaluation)]
    assert deleted == [old_job]
    assert decision.status.phase == Phase.EVALUATING and decision.status.evaluation.job != old_job


def test_an_evaluating_status_without_a_running_job_runs_the_gate_again_never_passes():
    finished = evaluating(GATED)
    finished = finished.model_copy(
        update={
            "evaluation": finished.evaluation.model_copy(
                update={"outcome": Outcome.SUCCESSFUL, "finished_at": T0}
            )
        }
    )
    for status in (finished, evaluating(GATED).model_copy(update={"evaluation": None})):
        decision = decide(GATED, status, Observations(rollout="bank"), at(60))
        assert decision.status.phase == Phase.EVALUATING and decision.status.canary_weight == 0
        assert decision.status.evaluation.running
        assert [a.kind for a in decision.actions if isinstance(a, RunEvaluation)] == ["RunEvaluation"]
