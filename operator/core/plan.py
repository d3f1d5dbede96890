"""Pure helpers about the rollout plan: its hash, when a check is due, the route for a status."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from finserve.contracts import Route

from ..spec import ModelRolloutSpec
from ..status import EvaluationStage, Phase, RolloutStatus

CHECKED_PHASES = (Phase.PROGRESSING, Phase.SHADOWING)
"""Phases with a periodic analysis check (live or shadow); the evaluation before promotion keeps the
live checks of the weight it holds."""


def steps_hash(spec: ModelRolloutSpec) -> str:
    """Hash of what defines the rollout (adapters and strategy); autoscaling edits do not restart it."""
    plan = spec.model_dump(
        mode="json", by_alias=True, include={"model", "base_model", "stable", "canary", "strategy"}
    )
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]


def next_analysis_at(spec: ModelRolloutSpec, status: RolloutStatus) -> datetime | None:
    """When the next check is due: one interval after the step began or the last check ran."""
    live_while_evaluating = (
        status.phase == Phase.EVALUATING
        and status.evaluation is not None
        and status.evaluation.stage == EvaluationStage.BEFORE_PROMOTION
    )
    if (status.phase not in CHECKED_PHASES and not live_while_evaluating) or status.step_started_at is None:
        return None
    since = max(t for t in (status.step_started_at, status.last_analysis_at) if t is not None)
    return since + timedelta(seconds=spec.strategy.analysis.interval_seconds)


def analysis_due(spec: ModelRolloutSpec, status: RolloutStatus, now: datetime) -> bool:
    due = next_analysis_at(spec, status)
    return due is not None and now >= due


def shadow_percent(spec: ModelRolloutSpec, status: RolloutStatus) -> float:
    """Shadow traffic runs from the shadow phase until the rollout promotes, fails or is aborted."""
    shadow = spec.strategy.shadow
    phase = status.paused_from if status.phase == Phase.PAUSED and status.paused_from else status.phase
    if shadow is None:
        return 0.0
    if phase in (Phase.SHADOWING, Phase.PROGRESSING) or (
        phase == Phase.EVALUATING
        and status.evaluation is not None
        and status.evaluation.stage == EvaluationStage.BEFORE_PROMOTION
    ):
        return shadow.percent
    return 0.0


def route_for(spec: ModelRolloutSpec, status: RolloutStatus) -> Route:
    """The routing-table entry a status stands for."""
    stable, canary = spec.stable.ref(), spec.canary.ref()
    if status.phase in (Phase.PROMOTING, Phase.SUCCEEDED):
        return Route(base_model=spec.base_model, stable=canary)
    if status.phase in (Phase.FAILED, Phase.ABORTED):
        return Route(base_model=spec.base_model, stable=stable)
    return Route(
        base_model=spec.base_model,
        stable=stable,
        canary=canary,
        canary_weight=status.canary_weight,
        shadow_percent=shadow_percent(spec, status),
    )


def evaluation_job_name(rollout: str, plan: str, stage: EvaluationStage, attempt: int) -> str:
    """A Job name fixed by rollout, plan, gate and attempt: a restarted operator finds its Job again.

    At most 63 characters (the Job controller puts the name in a label); the rollout's name is cut
    to fit, the digest keeps cut names of different rollouts apart.
    """
    code = "traffic" if stage == EvaluationStage.BEFORE_TRAFFIC else "promotion"
    digest = hashlib.sha256(f"{rollout}/{plan}/{stage}".encode()).hexdigest()[:8]
    suffix = f"-eval-{code}-{digest}-{attempt}"
    prefix = (rollout or "rollout")[: 63 - len(suffix)].rstrip("-.")
    return prefix + suffix


def route_after_delete(spec: ModelRolloutSpec, status: RolloutStatus) -> Route | None:
    """When a rollout is deleted its model keeps serving: promoted if it got there, else stable."""
    if status.phase is None:
        return None
    if status.phase in (Phase.PROMOTING, Phase.SUCCEEDED):
        return route_for(spec, status.model_copy(update={"phase": Phase.SUCCEEDED}))
    return route_for(spec, status.model_copy(update={"phase": Phase.ABORTED}))
