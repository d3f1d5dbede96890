"""Plain helpers shared by the operator tests (fixtures live in conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from finserve.contracts.evaluation import AnswerEvalReport, AnswerMetrics
from finserve.operator.core.observations import AnalysisObservation, Reading
from finserve.operator.core.plan import evaluation_job_name, steps_hash
from finserve.operator.spec import ModelRolloutSpec
from finserve.operator.status import EvaluationStage, EvaluationStatus, Phase, RolloutStatus

RESOURCE_MRO = "finserve.dev/v1alpha1/modelrollouts"
RESOURCE_CM = "v1/configmaps"
RESOURCE_DEPLOY = "apps/v1/deployments"
RESOURCE_HPA = "autoscaling/v2/horizontalpodautoscalers"
RESOURCE_RAY = "ray.io/v1/rayservices"
RESOURCE_EVENTS = "v1/events"
RESOURCE_JOBS = "batch/v1/jobs"
RESOURCE_PODS = "v1/pods"


def rollout_manifest(name: str = "bank", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A ModelRollout object (the samples' shape) with spec overrides."""
    body: dict[str, Any] = {
        "model": "finserve-banking",
        "baseModel": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "stable": {"adapter": "banking77", "version": "1.0.0"},
        "canary": {"adapter": "banking77", "version": "1.1.0"},
    }
    body.update(spec)
    return {
        "apiVersion": "finserve.dev/v1alpha1",
        "kind": "ModelRollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def healthy(prom: Any, requests: float = 100.0) -> None:
    """Fake Prometheus values for a healthy canary (needles match the built-in queries)."""
    prom.set('code=~"5..', 0.0)
    prom.set("increase(finserve_requests_total", requests)
    prom.set("histogram_quantile", 0.4)
    prom.set("finserve_pii_findings_total", 0.0)
    prom.set('agree="true"', 0.97)


def fast(**overrides: Any) -> dict[str, Any]:
    """A strategy that finishes in a few one-second checks."""
    strategy: dict[str, Any] = {
        "steps": [50, 100],
        "stepInterval": "0s",
        "analysis": {"interval": "1s", "failureThreshold": 1, "minRequests": 10},
    }
    strategy.update(overrides)
    return strategy


def collection_path(namespace: str, group_version: str, plural: str) -> str:
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}"


async def create(kube: Any, resource: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST an object through the emulated API (stamped and announced to watchers like a real create)."""
    group_version, plural = resource.rsplit("/", 1)
    ns = body["metadata"].get("namespace", "default")
    async with kube.post(collection_path(ns, group_version, plural), json=body) as response:
        assert response.status < 300, await response.text()
        return await response.json()


async def patch(
    kube: Any, resource: str, namespace: str, name: str, body: Any, subresource: str | None = None
) -> dict[str, Any]:
    group_version, plural = resource.rsplit("/", 1)
    url = f"{collection_path(namespace, group_version, plural)}/{name}" + (
        f"/{subresource}" if subresource else ""
    )
    kind = "application/json-patch+json" if isinstance(body, list) else "application/merge-patch+json"
    async with kube.patch(url, json=body, headers={"Content-Type": kind}) as response:
        assert response.status < 300, await response.text()
        return await response.json()


async def delete(kube: Any, resource: str, namespace: str, name: str) -> None:
    group_version, plural = resource.rsplit("/", 1)
    async with kube.delete(f"{collection_path(namespace, group_version, plural)}/{name}") as response:
        assert response.status < 300, await response.text()


T0 = datetime(2025, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_spec(strategy: dict[str, Any] | None = None, **fields: Any) -> ModelRolloutSpec:
    return ModelRolloutSpec.model_validate(
        rollout_manifest(**({"strategy": strategy} if strategy else {}), **fields)["spec"]
    )


def running(spec: ModelRolloutSpec, step: int = 0, started: float = 0.0, **fields: Any) -> RolloutStatus:
    """A Progressing status at a step of this spec's plan."""
    values: dict[str, Any] = {
        "phase": Phase.PROGRESSING,
        "steps_hash": steps_hash(spec),
        "current_step_index": step,
        "canary_weight": spec.strategy.steps[step],
        "step_started_at": at(started),
    }
    values.update(fields)
    return RolloutStatus(**values)


def readings(requests: float | None = 100.0, **values: float | None | str) -> AnalysisObservation:
    """Healthy readings for the built-in metrics, with overrides; a str value is a source error."""
    base: dict[str, float | None | str] = {
        "error-rate": 0.001,
        "latency-p95": 0.8,
        "pii-output": 0.0,
        "intent-quality": 0.96,
    }
    base.update({k.replace("_", "-"): v for k, v in values.items()})

    def reading(v: float | None | str) -> Reading:
        return Reading(error=v) if isinstance(v, str) else Reading(value=v)

    return AnalysisObservation(requests=reading(requests), metrics={k: reading(v) for k, v in base.items()})


def api_calls(kube: Any) -> set[tuple[str, str, str]]:
    """(apiGroup, resource[/subresource], verb) of every API call not made by the test itself."""
    calls = set()
    for request in kube:
        if request.headers.get("User-Agent", "").startswith("kmock/"):
            continue  # the test's own setup
        resource = request.resource
        if resource is None or not resource.plural:
            continue  # discovery (/api, /apis, /version) is open to every authenticated client
        named = request.name is not None
        verb = {
            "GET": "get" if named else ("watch" if request.params.get("watch") == "true" else "list"),
            "POST": "create",
            "PATCH": "patch",
            "PUT": "update",
            "DELETE": "delete",
        }[request.method.value]
        plural = f"{resource.plural}/{request.subresource}" if request.subresource else resource.plural
        calls.add((resource.group or "", plural, verb))
    return calls


GOLDEN = {"configMap": {"name": "golden", "key": "golden.csv"}}


def gated(**evaluation: Any) -> dict[str, Any]:
    """strategy.evaluation with a ConfigMap golden set and overrides."""
    return {"goldenSet": GOLDEN, **evaluation}


def report(rows: int = 200, baseline: dict[str, Any] | None = None, **candidate: Any) -> AnswerEvalReport:
    """An evaluation report: stable and canary equally good unless overridden."""
    figures = {
        "rows": rows,
        "answer_accuracy": 0.84,
        "groundedness": 0.93,
        "truncated_rate": 0.02,
        "repetition_rate": 0.01,
        "pii_leaks": 0,
    }
    return AnswerEvalReport(
        dataset="golden.csv",
        candidate=AnswerMetrics(adapter="banking77@1.1.0", **{**figures, **candidate}),
        baseline=AnswerMetrics(adapter="banking77@1.0.0", **{**figures, **(baseline or {})}),
        groundedness_threshold=0.6,
        seconds=42.0,
    )


def evaluating(
    spec: ModelRolloutSpec,
    stage: EvaluationStage = EvaluationStage.BEFORE_TRAFFIC,
    attempt: int = 1,
    started: float = 0.0,
    step: int = 0,
    rollout: str = "bank",
    **fields: Any,
) -> RolloutStatus:
    """An Evaluating status with its Job (named as decide() names it for rollout ``bank``)."""
    plan = steps_hash(spec)
    before_traffic = stage == EvaluationStage.BEFORE_TRAFFIC
    values: dict[str, Any] = {
        "phase": Phase.EVALUATING,
        "steps_hash": plan,
        "current_step_index": step,
        "canary_weight": 0 if before_traffic else spec.strategy.steps[step],
        "step_started_at": None if before_traffic else at(started - 600),
        "evaluation": EvaluationStatus(
            stage=stage,
            job=evaluation_job_name(rollout, plan, stage, attempt),
            attempt=attempt,
            started_at=at(started),
        ),
    }
    values.update(fields)
    return RolloutStatus(**values)


def shadow_readings(samples: float | None = 200.0, **values: float | None | str) -> AnalysisObservation:
    """Healthy shadow readings, with overrides; a str value is a source error."""
    base: dict[str, float | None | str] = {
        "shadow-similarity": 0.91,
        "shadow-intent-agreement": 0.95,
        "shadow-pii": 0.0,
    }
    base.update({k.replace("_", "-"): v for k, v in values.items()})

    def reading(v: float | None | str) -> Reading:
        return Reading(error=v) if isinstance(v, str) else Reading(value=v)

    return AnalysisObservation(requests=reading(samples), metrics={k: reading(v) for k, v in base.items()})
