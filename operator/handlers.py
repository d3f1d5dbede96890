"""kopf handlers: read the object, run one tick, record the status. Each stays a few lines.

Run with ``finserve operator run`` (or ``kopf run -m finserve.operator.handlers``). A running
rollout waits for its next check with ``kopf.TemporaryError(delay=...)``; all state is in the
object's status, so the operator can stop at any moment and resume from there.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf

from .api import FINALIZER, GROUP, KOPF_PREFIX, PLURAL, VERSION
from .core.decide import invalid
from .core.plan import route_after_delete
from .objects import KopfEvents, object_ref, parse_spec, rollout_status_patch, scaling_status_patch
from .runtime import Runtime
from .settings import OperatorConfig, load_operator_config
from .status import RolloutStatus
from .tick import rollout_tick, scaling_tick

MRO = (GROUP, VERSION, PLURAL)
SCALING_INTERVAL = 15.0  # seconds, as the HPA's default sync period


def _now() -> datetime:
    return datetime.now(UTC)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # Read the service account or $KUBECONFIG now, not when the module was imported.
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=KOPF_PREFIX)
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300  # renew watches now and then
    # `finserve operator run` loads the config before kopf starts (a bad one stops it there); `kopf run -m` does not.
    config = memo.get("config")
    memo.runtime = await Runtime.connect(
        config if isinstance(config, OperatorConfig) else load_operator_config()
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo.runtime.aclose()


@kopf.on.resume(*MRO)
@kopf.on.create(*MRO)
@kopf.on.update(*MRO)
async def reconcile(
    body: kopf.Body, status: kopf.Status, patch: kopf.Patch, memo: kopf.Memo, **_: Any
) -> None:
    spec, current = parse_spec(body.get("spec", {})), RolloutStatus.from_wire(dict(status))
    runtime: Runtime = memo.runtime
    ref = object_ref(body)
    if isinstance(spec, str):
        failed = invalid(current, spec, body.meta.get("generation"), _now())
        runtime.metrics.record(ref.namespace, ref.name, str(body.get("spec", {}).get("model", "")), failed)
        patch.status.update(rollout_status_patch(failed))
        raise kopf.PermanentError(f"invalid spec: {spec}")
    decision = await rollout_tick(spec, current, ref, runtime.ports, KopfEvents(body), _now())
    runtime.metrics.record(ref.namespace, ref.name, spec.model, decision.status)
    patch.status.update(rollout_status_patch(decision.status))
    if decision.requeue_after is not None:
        raise kopf.TemporaryError(
            f"waiting for the next tick: {decision.status.message}",
            delay=min(decision.requeue_after, runtime.config.poll_seconds),
        )


@kopf.on.delete(*MRO)
async def release(body: kopf.Body, status: kopf.Status, memo: kopf.Memo, **_: Any) -> None:
    """A deleted rollout leaves its model serving: promoted if it got there, else all on stable."""
    memo.runtime.metrics.forget(body.meta["namespace"], body.meta["name"])
    spec = parse_spec(body.get("spec", {}))
    if isinstance(spec, str):
        return
    route = route_after_delete(spec, RolloutStatus.from_wire(dict(status)))
    if route is not None:
        await memo.runtime.ports.routes.set_route(body.meta["namespace"], spec.model, route)


def _scales(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    return bool(spec.get("autoscaling")) or bool(status.get("replicas"))


@kopf.timer(*MRO, interval=SCALING_INTERVAL, when=_scales)
async def autoscale(
    body: kopf.Body, status: kopf.Status, patch: kopf.Patch, memo: kopf.Memo, **_: Any
) -> None:
    spec = parse_spec(body.get("spec", {}))
    if isinstance(spec, str):
        return  # reconcile reports invalid specs
    runtime: Runtime = memo.runtime
    decision = await scaling_tick(
        spec, RolloutStatus.from_wire(dict(status)), object_ref(body), runtime.ports, KopfEvents(body), _now()
    )
    patch.status.update(scaling_status_patch(decision.status))
