"""Plain helpers shared by the operator tests (fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any

RESOURCE_MRO = "finserve.dev/v1alpha1/modelrollouts"
RESOURCE_CM = "v1/configmaps"
RESOURCE_DEPLOY = "apps/v1/deployments"
RESOURCE_HPA = "autoscaling/v2/horizontalpodautoscalers"
RESOURCE_RAY = "ray.io/v1/rayservices"
RESOURCE_EVENTS = "v1/events"


def rollout_manifest(name: str = "bank", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A ModelRollout object (the samples' shape) with spec overrides."""
    body: dict[str, Any] = {
        "model": "finserve-banking",
        "baseModel": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "stable": {"adapter": "banking77", "version": "1.0.0"},
        "canary": {"adapter": "banking77", "version": "1.1.0"},
    }
    body.update(spec)
    return {"apiVersion": "finserve.dev/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name, "namespace": namespace}, "spec": body}


def healthy(prom: Any, requests: float = 100.0) -> None:
    """Fake Prometheus values for a healthy canary (needles match the built-in queries)."""
    prom.set('code=~"5..', 0.0)
    prom.set("increase(finserve_requests_total", requests)
    prom.set("histogram_quantile", 0.4)
    prom.set("finserve_pii_findings_total", 0.0)
    prom.set('agree="true"', 0.97)


def fast(**overrides: Any) -> dict[str, Any]:
    """A strategy that finishes in a few one-second checks."""
    strategy: dict[str, Any] = {"steps": [50, 100], "stepInterval": "0s",
                                "analysis": {"interval": "1s", "failureThreshold": 1, "minRequests": 10}}
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


async def patch(kube: Any, resource: str, namespace: str, name: str, body: Any,
                subresource: str | None = None) -> dict[str, Any]:
    group_version, plural = resource.rsplit("/", 1)
    url = f"{collection_path(namespace, group_version, plural)}/{name}" + (f"/{subresource}" if subresource else "")
    kind = "application/json-patch+json" if isinstance(body, list) else "application/merge-patch+json"
    async with kube.patch(url, json=body, headers={"Content-Type": kind}) as response:
        assert response.status < 300, await response.text()
        return await response.json()


async def delete(kube: Any, resource: str, namespace: str, name: str) -> None:
    group_version, plural = resource.rsplit("/", 1)
    async with kube.delete(f"{collection_path(namespace, group_version, plural)}/{name}") as response:
        assert response.status < 300, await response.text()
