"""decide(spec, status, observations, now) -> Decision: the whole rollout state machine, pure.

Initializing -> Progressing (step by step) -> Promoting -> Succeeded, or -> Failed (rolled back) /
Aborted; Paused in between on command. Every decision carries the absolute route for the new
status, so applying it twice is harmless and a restarted operator converges from status alone.
"""

from __future__ import annotations

from datetime import datetime

from ..api import COMMANDS
from ..spec import ModelRolloutSpec
from ..status import AnalysisRecord, Condition, Outcome, Phase, RolloutStatus
from .actions import Action, Decision, EmitEvent, SetRoute
from .analysis import evaluate, evidence
from .observations import AnalysisObservation, Observations
from .plan import analysis_due, next_analysis_at, route_for, steps_hash

SOON = 1.0
"""Seconds to the next tick when a transition is pending (Initializing, Promoting)."""


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
            "conditions": _conditions(st, now),
        }
    )
    actions.insert(0, SetRoute(model=spec.model, route=route))
    return Decision(status=st, actions=actions, requeue_after=_requeue(spec, st, now))


def _start(
    spec: ModelRolloutSpec, st: RolloutStatus, plan: str, now: datetime, actions: list[Action]
) -> RolloutStatus:
    if st.phase is not None:
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
        conditions=[c for c in st.conditions if c.type != "AnalysisHealthy"],  # about the old plan
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
                "message": f"aborted by command; all traffic on stable {spec.stable.ref()}",
            }
            actions.append(EmitEvent(type="Warning", reason="Aborted", message=str(update["message"])))
        elif command == "promote":
            update |= {"phase": Phase.PROMOTING, "message": f"promoting {spec.canary.ref()} by command"}
            actions.append(
                EmitEvent(type="Normal", reason="PromotedByCommand", message=str(update["message"]))
            )
        elif command == "pause":
            update |= {"phase": Phase.PAUSED, "message": f"paused at {st.canary_weight}% by command"}
            actions.append(EmitEvent(type="Normal", reason="Paused", message=str(update["message"])))
        else:  # resume: the step starts over, with fresh successes, so a check sees the new period
            update |= {
                "phase": Phase.PROGRESSING,
                "step_started_at": now,
                "last_analysis_at": None,
                "successful_checks": 0,
                "message": f"resumed at {st.canary_weight}%",
            }
            actions.append(EmitEvent(type="Normal", reason="Resumed", message=str(update["message"])))
        st = st.model_copy(update=update)
    return st


def _command_applies(command: str, phase: Phase | None) -> bool:
    if command in ("abort", "promote"):
        return phase in (Phase.INITIALIZING, Phase.PROGRESSING, Phase.PAUSED)
    if command == "pause":
        return phase in (Phase.INITIALIZING, Phase.PROGRESSING)
    return phase == Phase.PAUSED


def _step(
    spec: ModelRolloutSpec, st: RolloutStatus, obs: Observations, now: datetime, actions: list[Action]
) -> RolloutStatus:
    steps = spec.strategy.steps
    if st.phase == Phase.INITIALIZING:
        if obs.canary_ready is False:
            return st.model_copy(update={"message": "waiting for a ready replica in the canary pool"})
        message = f"step 1/{len(steps)}: {steps[0]}% to canary {spec.canary.ref()}"
        actions.append(EmitEvent(type="Normal", reason="Progressing", message=message))
        return st.model_copy(
            update={
                "phase": Phase.PROGRESSING,
                "current_step_index": 0,
                "canary_weight": steps[0],
                "step_started_at": now,
                "last_analysis_at": None,
                "message": message,
            }
        )
    if st.phase == Phase.PROMOTING:
        message = f"canary {spec.canary.ref()} promoted: it is the stable route now"
        actions.append(EmitEvent(type="Normal", reason="Promoted", message=message))
        return st.model_copy(update={"phase": Phase.SUCCEEDED, "canary_weight": 0, "message": message})
    if st.phase != Phase.PROGRESSING or obs.analysis is None or not analysis_due(spec, st, now):
        return st
    return _check(spec, st, obs.analysis, now, actions)


def _check(
    spec: ModelRolloutSpec,
    st: RolloutStatus,
    readings: AnalysisObservation,
    now: datetime,
    actions: list[Action],
) -> RolloutStatus:
    analysis = spec.strategy.analysis
    verdict = evaluate(analysis, readings)
    failed, successes = st.failed_checks, st.successful_checks
    if verdict.outcome == Outcome.SUCCESSFUL:
        failed, successes = 0, successes + 1
    elif verdict.outcome == Outcome.FAILED:
        failed, successes = failed + 1, 0
    record = AnalysisRecord(
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
    steps, i = spec.strategy.steps, st.current_step_index
    if failed >= analysis.failure_threshold:
        message = (
            f"canary {spec.canary.ref()} rolled back at {st.canary_weight}% after {failed} failed "
            f"check(s): {evidence(verdict.metrics)}"
        )
        actions.append(EmitEvent(type="Warning", reason="RolledBack", message=message))
        return st.model_copy(update={"phase": Phase.FAILED, "canary_weight": 0, "message": message})
    held = (now - (st.step_started_at or now)).total_seconds()
    if successes >= analysis.success_threshold and held >= spec.strategy.step_interval_seconds:
        if i + 1 >= len(steps):
            message = f"canary {spec.canary.ref()} passed every step: promoting"
            actions.append(EmitEvent(type="Normal", reason="Promoting", message=message))
            return st.model_copy(update={"phase": Phase.PROMOTING, "message": message})
        message = f"step {i + 2}/{len(steps)}: {steps[i + 1]}% to canary {spec.canary.ref()}"
        actions.append(EmitEvent(type="Normal", reason="StepAdvanced", message=message))
        return st.model_copy(
            update={
                "current_step_index": i + 1,
                "canary_weight": steps[i + 1],
                "step_started_at": now,
                "successful_checks": 0,
                "message": message,
            }
        )
    return st.model_copy(
        update={
            "message": f"step {i + 1}/{len(steps)} at {st.canary_weight}%: "
            f"last check {verdict.outcome.value} ({verdict.message})"
        }
    )


def _set(
    conditions: list[Condition], now: datetime, type_: str, status: str, reason: str, message: str
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
        status, reason = {
            Outcome.SUCCESSFUL: ("True", "ChecksPassing"),
            Outcome.FAILED: ("False", "ChecksFailing"),
            Outcome.INCONCLUSIVE: ("Unknown", "NotEnoughData"),
            Outcome.ERROR: ("Unknown", "MetricSourceError"),
        }[record.outcome]
        conds = _set(conds, now, "AnalysisHealthy", status, reason, record.message)
    return conds


def _requeue(spec: ModelRolloutSpec, st: RolloutStatus, now: datetime) -> float | None:
    if st.phase in (Phase.INITIALIZING, Phase.PROMOTING):
        return SOON
    due = next_analysis_at(spec, st)
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
