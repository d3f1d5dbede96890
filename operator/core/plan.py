"""Pure helpers about the rollout plan: its hash, when a check is due, the route for a status."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from finserve.contracts import Route

from ..spec import ModelRolloutSpec
from ..status import Phase, RolloutStatus


def steps_hash(spec: ModelRolloutSpec) -> str:
    """Hash of what defines the rollout (adapters and strategy); autoscaling edits do not restart it."""
    plan = spec.model_dump(
        mode="json", by_alias=True, include={"model", "base_model", "stable", "canary", "strategy"}
    )
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]


def next_analysis_at(spec: ModelRolloutSpec, status: RolloutStatus) -> datetime | None:
    """When the next check is due: one interval after the step began or the last check ran."""
    if status.phase != Phase.PROGRESSING or status.step_started_at is None:
        return None
    since = max(t for t in (status.step_started_at, status.last_analysis_at) if t is not None)
    return since + timedelta(seconds=spec.strategy.analysis.interval_seconds)


def analysis_due(spec: ModelRolloutSpec, status: RolloutStatus, now: datetime) -> bool:
    due = next_analysis_at(spec, status)
    return due is not None and now >= due


def route_for(spec: ModelRolloutSpec, status: RolloutStatus) -> Route:
    """The routing-table entry a status stands for."""
    stable, canary = spec.stable.ref(), spec.canary.ref()
    if status.phase in (Phase.PROMOTING, Phase.SUCCEEDED):
        return Route(base_model=spec.base_model, stable=canary)
    if status.phase in (Phase.FAILED, Phase.ABORTED):
        return Route(base_model=spec.base_model, stable=stable)
    return Route(base_model=spec.base_model, stable=stable, canary=canary, canary_weight=status.canary_weight)


def route_after_delete(spec: ModelRolloutSpec, status: RolloutStatus) -> Route | None:
    """When a rollout is deleted its model keeps serving: promoted if it got there, else stable."""
    if status.phase is None:
        return None
    if status.phase in (Phase.PROMOTING, Phase.SUCCEEDED):
        return route_for(spec, status.model_copy(update={"phase": Phase.SUCCEEDED}))
    return route_for(spec, status.model_copy(update={"phase": Phase.ABORTED}))
