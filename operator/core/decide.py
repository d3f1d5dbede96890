"""decide(spec, status, observations, now) -> Decision: the whole rollout state machine, pure.

Initializing -> [Evaluating before traffic] -> [Shadowing at 0 %] -> Progressing (step by step,
[Evaluating before the last step]) -> Promoting -> Succeeded, or -> Failed (rolled back) / Aborted;
Paused in between on command. Every decision carries the absolute route for the new status, so
applying it twice is harmless and a restarted operator converges from status alone.
"""

from __future__ import annotations

from datetime import datetime

from ..api import COMMANDS
from ..spec import Analysis, ModelRolloutSpec
from ..status import (
    AnalysisKind,
    AnalysisRecord,
    Condition,
    ConditionStatus,
    EvaluationStage,
    EvaluationStatus,
    Outcome,
    Phase,
    RolloutStatus,
)
from .actions import Action, Decision, DeleteEvaluation, EmitEvent, RunEvaluation, SetRoute
from .analysis import Verdict, evaluate, evidence
from .gate import judge_job
from .observations import AnalysisObservation, Observations
from .plan import analysis_due, evaluation_job_name, next_analysis_at, route_for, steps_hash

SOON = 1.0
"""Seconds to the next tick when a transition is pending (Initializing, Promoting)."""
EVALUATION_POLL = 10.0
"""Seconds between looks at a running evaluation Job."""

_STAGE_WORDS = {
    EvaluationStage.BEFORE_TRAFFIC: "before traffic",
    EvaluationStage.BEFORE_PROMOTION: "before promotion",
}


def decide(spec: ModelRolloutSpec, status: RolloutStatus, obs: Observations, now: datetime) -> Decision:
    actions: list[Action] = []
    plan = steps_hash(spec)
    st = status
    if st.phase is None or st.steps_hash != plan:
        st = _start(spec, st, plan, now, actions)
    # The step goes first, from the recorded phase; a command then acts on its result, so a
    # promote or abort lasts a tick in Promoting/Aborted before anything else happens.
    st = _step(spec, st, obs, now, actions)
    st = _commands(spec, st, obs.commands, now, actions)
    route = route_for(spec, st)
    st = st.model_copy(
        update={
            "observed_generation": obs.generation if obs.generation is not None else st.observed_generation,
            "stable": str(route.stable),
            "canary": str(route.canary) if route.canary is not None else None,
            "shadow_percent": route.shadow_percent,
            "conditions": _conditions(st, now),
        }
    )
    actions.insert(0, SetRoute(model=spec.model, route=route))
    return Decision(status=st, actions=actions, requeue_after=_requeue(spec, st, now))


def _stop_evaluation(
    st: RolloutStatus, why: str, now: datetime, actions: list[Action]
) -> EvaluationStatus | None:
    """A running evaluation Job is deleted; its record says why it has no verdict."""
    record = st.evaluation
    if record is None or not record.running:
        return record
    actions.append(DeleteEvaluation(job=record.job))
    return record.model_copy(update={"finished_at": now, "message": f"stopped: {why}"})


def _start(
    spec: ModelRolloutSpec, st: RolloutStatus, plan: str, now: datetime, actions: list[Action]
) -> RolloutStatus:
    if st.phase is not None:
        _stop_evaluation(st, "the rollout plan changed", now, actions)
        actions.append(
            EmitEvent(
                type="Normal",
                reason="Restarted",
                message="the rollout plan changed: starting again from the first step",
            )
        )
    return RolloutStatus(
        phase=Phase.INITIALIZING,
        steps_hash=plan,
        handled_commands=st.handled_commands,  # an old command value must not fire again
        replicas=st.replicas,  # owned by the autoscaler
        # Conditions about the old plan go; Valid and Ready are recomputed.
        conditions=[c for c in st.conditions if c.type not in ("AnalysisHealthy", "EvaluationPassed")],
        message=f"routing 0% to canary {spec.canary.ref()} while initializing",
    )


def _commands(
    spec: ModelRolloutSpec, st: RolloutStatus, commands: dict[str, str], now: datetime, actions: list[Action]
) -> RolloutStatus:
    for command in COMMANDS:  # abort first: the safest command wins when several are new
        value = commands.get(command)
        if value is None or st.handled_commands.get(command) == value:
            continue
        handled = {**st.handled_commands, command: value}
        applies = _command_applies(command, st.phase)
        if not applies:
            st = st.model_copy(update={"handled_commands": handled})
            actions.append(
                EmitEvent(
                    type="Normal",
                    reason="CommandIgnored",
                    message=f"{command} ignored: the rollout is {st.phase}",
                )
            )
            continue
        update: dict[str, object] = {"handled_commands": handled}
        if command == "abort":
            update |= {
                "phase": Phase.ABORTED,
                "canary_weight": 0,
                "paused_from": None,
                "evaluation": _stop_evaluation(st, "aborted", now, actions),
                "message": f"aborted by command; all traffic on stable {spec.stable.ref()}",
            }
            actions.append(EmitEvent(type="Warning", reason="Aborted", message=str(update["message"])))
        elif command == "promote":
            update |= {
                "phase": Phase.PROMOTING,
                "paused_from": None,
                "evaluation": _stop_evaluation(st, "promoted by command", now, actions),
                "message": f"promoting {spec.canary.ref()} by command",
            }
            actions.append(
                EmitEvent(type="Normal", reason="PromotedByCommand", message=str(update["message"]))
            )
        elif command == "retry":
            st = _retry(spec, st, handled)
            actions.append(EmitEvent(type="Normal", reason="Retried", message=st.message or ""))
            continue
        elif command == "pause":
            update |= {
                "phase": Phase.PAUSED,
                "paused_from": st.phase,
                "message": f"paused at {st.canary_weight}% by command",
            }
            actions.append(EmitEvent(type="Normal", reason="Paused", message=str(update["message"])))
        else:  # resume: a checked phase starts its period over, with fresh successes
            back = st.paused_from or Phase.PROGRESSING
            update |= {
                "phase": back,
                "paused_from": None,
                "message": f"resumed at {st.canary_weight}% ({back})",
            }
            if back in (Phase.PROGRESSING, Phase.SHADOWING):
                update |= {"step_started_at": now, "last_analysis_at": None, "successful_checks": 0}
            actions.append(EmitEvent(type="Normal", reason="Resumed", message=str(update["message"])))
        st = st.model_copy(update=update)
    return st


_ACTIVE = (Phase.INITIALIZING, Phase.EVALUATING, Phase.SHADOWING, Phase.PROGRESSING)


def _retry(spec: ModelRolloutSpec, st: RolloutStatus, handled: dict[str, str]) -> RolloutStatus:
    """A Failed or Aborted rollout from its first step, as a fresh one: the same plan, no checks, weight 0
    until Initializing has passed its gates again (the canary pool, an evaluation before traffic)."""
    return RolloutStatus(
        phase=Phase.INITIALIZING,
        steps_hash=st.steps_hash,
        handled_commands=handled,
        replicas=st.replicas,  # owned by the autoscaler
        conditions=[c for c in st.conditions if c.type not in ("AnalysisHealthy", "EvaluationPassed")],
        message=f"retrying canary {spec.canary.ref()} from the first step by command",
    )


def _command_applies(command: str, phase: Phase | None) -> bool:
    if command == "retry":
        return phase in (Phase.FAILED, Phase.ABORTED)
    if command in ("abort", "promote"):
        return phase in (*_ACTIVE, Phase.PAUSED)
    if command == "pause":
        return phase in _ACTIVE
    return phase == Phase.PAUSED


def _step(
    spec: ModelRolloutSpec, st: RolloutStatus, obs: Observations, now: datetime, actions: list[Action]
) -> RolloutStatus:
    if st.phase == Phase.INITIALIZING:
        if obs.canary_ready is False:
            return st.model_copy(update={"message": "waiting for a ready replica in the canary pool"})
        evaluation = spec.strategy.evaluation
        if evaluation is not None and evaluation.before_traffic:
            return _begin_evaluation(spec, st, EvaluationStage.BEFORE_TRAFFIC, 1, obs, now, actions)
        return _after_traffic_gate(spec, st, obs, now, actions)
    if st.phase == Phase.EVALUATING:
        if obs.analysis is not None and analysis_due(spec, st, now):
            # Before promotion the canary keeps its live traffic, so its live checks go on: a
            # failure rolls back at once; passes only wait for the Job.
            st, verdict = _record_check(spec.strategy.analysis, st, obs.analysis, now, "Live")
            if st.failed_checks >= spec.strategy.analysis.failure_threshold:
                st = st.model_copy(update={"evaluation": _stop_evaluation(st, "rolled back", now, actions)})
                return _roll_back(spec, st, verdict, actions)
        return _evaluate(spec, st, obs, now, actions)
    if st.phase == Phase.PROMOTING:
        message = f"canary {spec.canary.ref()} promoted: it is the stable route now"
        actions.append(EmitEvent(type="Normal", reason="Promoted", message=message))
        return st.model_copy(update={"phase": Phase.SUCCEEDED, "canary_weight": 0, "message": message})
    if obs.analysis is None or not analysis_due(spec, st, now):
        return st
    if st.phase == Phase.SHADOWING and spec.strategy.shadow is not None:
        return _shadow_check(spec, st, obs, obs.analysis, now, actions)
    if st.phase == Phase.PROGRESSING:
        return _check(spec, st, obs, obs.analysis, now, actions)
    return st


def _after_traffic_gate(
    spec: ModelRolloutSpec, st: RolloutStatus, obs: Observations, now: datetime, actions: list[Action]
) -> RolloutStatus:
    """Shadow first when configured, else the first step."""
    shadow = spec.strategy.shadow
    if shadow is None:
        return _to_step(spec, st, 0, obs, now, actions, gated=st.evaluation is not None)
    message = (
        f"shadow: {shadow.percent:g}% of stable's requests mirrored to canary {spec.canary.ref()}, "
        "0% live traffic"
    )
    actions.append(EmitEvent(type="Normal", reason="Shadowing", message=message))
    return st.model_copy(
        update={
            "phase": Phase.SHADOWING,
            "current_step_index": 0,
            "canary_weight": 0,
            "step_started_at": now,
            "last_analysis_at": None,
            "successful_checks": 0,
            "failed_checks": 0,
            "message": message,
        }
    )


def _to_step(
    spec: ModelRolloutSpec,
    st: RolloutStatus,
    i: int,
    obs: Observations,
    now: datetime,
    actions: list[Action],
    gated: bool = False,
) -> RolloutStatus:
    """Route steps[i]; the last step (100 %) first passes the before-promotion gate.

    ``gated``: a gate just passed for this move (with steps [100], the before-traffic gate covers it).
    """
    steps = spec.strategy.steps
    evaluation = spec.strategy.evaluation
    if i == len(steps) - 1 and not gated and evaluation is not None and evaluation.before_promotion:
        return _begin_evaluation(spec, st, EvaluationStage.BEFORE_PROMOTION, 1, obs, now, actions)
    message = f"step {i + 1}/{len(steps)}: {steps[i]}% to canary {spec.canary.ref()}"
    actions.append(
        EmitEvent(type="Normal", reason="Progressing" if i == 0 else "StepAdvanced", message=message)
    )
    update: dict[str, object] = {
        "phase": Phase.PROGRESSING,
        "current_step_index": i,
        "canary_weight": steps[i],
        "step_started_at": now,
        "successful_checks": 0,
        "message": message,
    }
    if i == 0:  # live checks start afresh (shadow failures do not count against live)
        update |= {"last_analysis_at": None, "failed_checks": 0}
    return st.model_copy(update=update)


def _run_action(spec: ModelRolloutSpec, record: EvaluationStatus) -> RunEvaluation:
    evaluation = spec.strategy.evaluation
    assert evaluation is not None  # only called with an evaluation spec
    return RunEvaluation(
        job=record.job,
        stage=record.stage,
        candidate=spec.canary.ref(),
        baseline=spec.stable.ref(),
        golden_set=evaluation.golden_set,
        timeout_seconds=evaluation.timeout_seconds,
    )


def _begin_evaluation(
    spec: ModelRolloutSpec,
    st: RolloutStatus,
    stage: EvaluationStage,
    attempt: int,
    obs: Observations,
    now: datetime,
    actions: list[Action],
) -> RolloutStatus:
    job = evaluation_job_name(obs.rollout, st.steps_hash or "", stage, attempt)
    words = _STAGE_WORDS[stage]
    unavailable = obs.evaluation_unavailable
    if unavailable:
        # Nothing to retry: no Job can be created until the operator is set up for it.
        record = EvaluationStatus(
            stage=stage,
            job=job,
            attempt=attempt,
            started_at=now,
            finished_at=now,
            outcome=Outcome.ERROR,
            message=f"no evaluation Job can run: {unavailable}",
        )
        return _fail_gate(spec, st.model_copy(update={"evaluation": record}), record, actions)
    message = (
        f"evaluating canary {spec.canary.ref()} against stable {spec.stable.ref()} {words}: Job {job}"
        + (f" (attempt {attempt})" if attempt > 1 else "")
    )
    record = EvaluationStatus(stage=stage, job=job, attempt=attempt, started_at=now, message=message)
    actions.append(_run_action(spec, record))
    actions.append(EmitEvent(type="Normal", reason="EvaluationStarted", message=message))
    return st.model_copy(update={"phase": Phase.EVALUATING, "evaluation": record, "message": message})


def _evaluate(
    spec: ModelRolloutSpec, st: RolloutStatus, obs: Observations, now: datetime, actions: list[Action]
) -> RolloutStatus:
    evaluation, record = spec.strategy.evaluation, st.evaluation
    if evaluation is None:  # unreachable: the plan hash covers the spec; nothing to gate on
        return _after_traffic_gate(spec, st, obs, now, actions)
    if record is None or not record.running:
        # No Job to wait for (a status edited or lost): run the gate again, never count it as passed.
        stage = EvaluationStage.BEFORE_TRAFFIC if st.canary_weight == 0 else EvaluationStage.BEFORE_PROMOTION
        attempt = 1 if record is None else record.attempt + 1
        return _begin_evaluation(spec, st, stage, attempt, obs, now, actions)
    job = obs.evaluation if obs.evaluation is not None and obs.evaluation.name == record.job else None
    verdict = judge_job(evaluation, record, job, now)
    words = _STAGE_WORDS[record.stage]
    if verdict.outcome is None:
        if job is not None and job.state == "Absent":
            actions.append(_run_action(spec, record))  # created before a crash, or deleted by someone
        message = f"evaluating {words}: {verdict.message}"
        return st.model_copy(
            update={"evaluation": record.model_copy(update={"message": verdict.message}), "message": message}
        )
    if job is not None and job.state == "Running":
        actions.append(DeleteEvaluation(job=record.job))  # overdue by the operator's clock
    done = record.model_copy(
        update={
            "finished_at": now,
            "outcome": verdict.outcome,
            "message": verdict.message,
            "checks": verdict.checks,
            "report": verdict.report.summary() if verdict.report is not None else None,
        }
    )
    st = st.model_copy(update={"evaluation": done})
    if verdict.outcome == Outcome.SUCCESSFUL:
        actions.append(
            EmitEvent(
                type="Normal",
                reason="EvaluationPassed",
                message=f"canary {spec.canary.ref()} passed the evaluation {words}: {_gate_evidence(done)}",
            )
        )
        if record.stage == EvaluationStage.BEFORE_TRAFFIC:
            return _after_traffic_gate(spec, st, obs, now, actions)
        return _to_step(spec, st, len(spec.strategy.steps) - 1, obs, now, actions, gated=True)
    if (
        verdict.outcome == Outcome.ERROR
        and evaluation.on_error == "retry"
        and record.attempt <= evaluation.retry_limit
    ):
        actions.append(
            EmitEvent(
                type="Warning",
                reason="EvaluationRetried",
                message=f"evaluation {words} attempt {record.attempt} had an error ({verdict.message}); "
                f"retrying ({record.attempt}/{evaluation.retry_limit} retries used)",
            )
        )
        return _begin_evaluation(spec, st, record.stage, record.attempt + 1, obs, now, actions)
    return _fail_gate(spec, st, done, actions)


def _fail_gate(
    spec: ModelRolloutSpec, st: RolloutStatus, record: EvaluationStatus, actions: list[Action]
) -> RolloutStatus:
    words = _STAGE_WORDS[record.stage]
    if record.outcome == Outcome.FAILED:
        reason = "EvaluationFailed"
        message = (
            f"canary {spec.canary.ref()} failed the evaluation {words} and was rolled back: "
            f"{_gate_evidence(record)}"
        )
    else:
        reason = "EvaluationError"
        message = (
            f"canary {spec.canary.ref()} rolled back: the evaluation {words} could not give a verdict "
            f"({record.message})"
        )
    actions.append(EmitEvent(type="Warning", reason=reason, message=message))
    return st.model_copy(update={"phase": Phase.FAILED, "canary_weight": 0, "message": message})


def _gate_evidence(record: EvaluationStatus) -> str:
    if not record.checks:
        return record.message
    return "; ".join(
        f"{c.metric}={'n/a' if c.candidate is None else f'{c.candidate:.4g}'} ({c.outcome.value}: {c.message})"
        for c in record.checks
    )


def _record_check(
    analysis: Analysis,
    st: RolloutStatus,
    readings: AnalysisObservation,
    now: datetime,
    kind: AnalysisKind,
) -> tuple[RolloutStatus, Verdict]:
    verdict = evaluate(analysis, readings)
    failed, successes = st.failed_checks, st.successful_checks
    if verdict.outcome == Outcome.SUCCESSFUL:
        failed, successes = 0, successes + 1
    elif verdict.outcome == Outcome.FAILED:
        failed, successes = failed + 1, 0
    record = AnalysisRecord(
        kind=kind,
        time=now,
        step_index=st.current_step_index,
        outcome=verdict.outcome,
        requests=verdict.requests,
        message=verdict.message,
        metrics=verdict.metrics,
    )
    st = st.model_copy(
        update={
            "failed_checks": failed,
            "successful_checks": successes,
            "last_analysis": record,
            "last_analysis_at": now,
        }
    )
    return st, verdict


def _shadow_check(
    spec: ModelRolloutSpec,
    st: RolloutStatus,
    obs: Observations,
    readings: AnalysisObservation,
    now: datetime,
    actions: list[Action],
) -> RolloutStatus:
    shadow = spec.strategy.shadow
    assert shadow is not None
    analysis = shadow.as_analysis(spec.strategy.analysis)
    st, verdict = _record_check(analysis, st, readings, now, "Shadow")
    if st.failed_checks >= analysis.failure_threshold:
        return _roll_back(spec, st, verdict, actions, where="in the shadow phase", reason="ShadowFailed")
    held = (now - (st.step_started_at or now)).total_seconds()
    if st.successful_checks >= analysis.success_threshold and held >= shadow.duration_seconds:
        actions.append(
            EmitEvent(
                type="Normal",
                reason="ShadowPassed",
                message=f"canary {spec.canary.ref()} agreed with stable on shadow traffic: "
                f"{evidence(verdict.metrics)}",
            )
        )
        return _to_step(spec, st, 0, obs, now, actions)
    return st.model_copy(
        update={
            "message": f"shadow at {shadow.percent:g}%: last check {verdict.outcome.value} ({verdict.message})"
        }
    )


def _roll_back(
    spec: ModelRolloutSpec,
    st: RolloutStatus,
    verdict: Verdict,
    actions: list[Action],
    where: str | None = None,
    reason: str = "RolledBack",
) -> RolloutStatus:
    message = (
        f"canary {spec.canary.ref()} rolled back {where or f'at {st.canary_weight}%'} after {st.failed_checks} "
        f"failed check(s): {evidence(verdict.metrics)}"
    )
    actions.append(EmitEvent(type="Warning", reason=reason, message=message))
    return st.model_copy(update={"phase": Phase.FAILED, "canary_weight": 0, "message": message})


def _check(
    spec: ModelRolloutSpec,
    st: RolloutStatus,
    obs: Observations,
    readings: AnalysisObservation,
    now: datetime,
    actions: list[Action],
) -> RolloutStatus:
    analysis = spec.strategy.analysis
    st, verdict = _record_check(analysis, st, readings, now, "Live")
    failed, successes = st.failed_checks, st.successful_checks
    steps, i = spec.strategy.steps, st.current_step_index
    if failed >= analysis.failure_threshold:
        return _roll_back(spec, st, verdict, actions)
    held = (now - (st.step_started_at or now)).total_seconds()
    if successes >= analysis.success_threshold and held >= spec.strategy.step_interval_seconds:
        if i + 1 >= len(steps):
            message = f"canary {spec.canary.ref()} passed every step: promoting"
            actions.append(EmitEvent(type="Normal", reason="Promoting", message=message))
            return st.model_copy(update={"phase": Phase.PROMOTING, "message": message})
        return _to_step(spec, st, i + 1, obs, now, actions)
    return st.model_copy(
        update={
            "message": f"step {i + 1}/{len(steps)} at {st.canary_weight}%: "
            f"last check {verdict.outcome.value} ({verdict.message})"
        }
    )


def _set(
    conditions: list[Condition], now: datetime, type_: str, status: ConditionStatus, reason: str, message: str
) -> list[Condition]:
    """Replace one condition, keeping lastTransitionTime when its status did not change."""
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == status else now
    new = Condition(type=type_, status=status, reason=reason, message=message, last_transition_time=since)
    return [c for c in conditions if c.type != type_] + [new]


def _conditions(st: RolloutStatus, now: datetime) -> list[Condition]:
    conds = _set(st.conditions, now, "Valid", "True", "SpecValid", "")
    if st.phase == Phase.SUCCEEDED:
        conds = _set(conds, now, "Ready", "True", "Promoted", st.message)
    elif st.phase in (Phase.FAILED, Phase.ABORTED):
        conds = _set(
            conds, now, "Ready", "False", "RolledBack" if st.phase == Phase.FAILED else "Aborted", st.message
        )
    else:
        conds = _set(conds, now, "Ready", "Unknown", str(st.phase), st.message)
    record = st.last_analysis
    if record is not None:
        analysis_conditions: dict[Outcome, tuple[ConditionStatus, str]] = {
            Outcome.SUCCESSFUL: ("True", "ChecksPassing"),
            Outcome.FAILED: ("False", "ChecksFailing"),
            Outcome.INCONCLUSIVE: ("Unknown", "NotEnoughData"),
            Outcome.ERROR: ("Unknown", "MetricSourceError"),
        }
        status, reason = analysis_conditions[record.outcome]
        conds = _set(conds, now, "AnalysisHealthy", status, reason, record.message)
    gate = st.evaluation
    if gate is not None:
        gate_conditions: dict[Outcome | None, tuple[ConditionStatus, str]] = {
            Outcome.SUCCESSFUL: ("True", "GatePassed"),
            Outcome.FAILED: ("False", "MarginMissed"),
            Outcome.ERROR: ("False", "EvaluationError"),
            Outcome.INCONCLUSIVE: ("Unknown", "EvaluationRunning"),  # not produced by the gate
            None: ("Unknown", "EvaluationRunning" if gate.running else "EvaluationStopped"),
        }
        status, reason = gate_conditions[gate.outcome]
        conds = _set(conds, now, "EvaluationPassed", status, reason, f"{gate.stage}: {gate.message}")
    return conds


def _requeue(spec: ModelRolloutSpec, st: RolloutStatus, now: datetime) -> float | None:
    if st.phase in (Phase.INITIALIZING, Phase.PROMOTING):
        return SOON
    due = next_analysis_at(spec, st)
    if st.phase == Phase.EVALUATING:
        return (
            EVALUATION_POLL if due is None else max(min(EVALUATION_POLL, (due - now).total_seconds()), SOON)
        )
    if due is None:
        return None  # paused or finished: only a spec or annotation change moves it
    return max((due - now).total_seconds(), SOON)


def invalid(status: RolloutStatus, error: str, generation: int | None, now: datetime) -> RolloutStatus:
    """Status for a spec the models reject: report it; a rollout under way keeps its traffic as is."""
    message = f"invalid spec: {error}"
    conds = _set(status.conditions, now, "Valid", "False", "InvalidSpec", message)
    phase = status.phase if status.phase is not None else Phase.FAILED
    return status.model_copy(
        update={"phase": phase, "message": message, "conditions": conds, "observed_generation": generation}
    )
