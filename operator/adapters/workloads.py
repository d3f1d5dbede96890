"""Generator pool workloads: read and set replicas of a Deployment (scale subresource) or a
KubeRay RayService (Serve num_replicas and/or a worker group), and spot other autoscalers."""

from __future__ import annotations

from typing import Any, cast

import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from ..ports import WorkloadState
from ..spec import WorkloadRef

RAY = ("ray.io", "v1", "rayservices")
KEDA = ("keda.sh", "v1alpha1", "scaledobjects")


class WorkloadNotFound(LookupError):
    pass


def _serve_deployment(serve_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    for app in serve_config.get("applications") or []:
        for deployment in app.get("deployments") or []:
            if deployment.get("name") == name:
                return cast("dict[str, Any]", deployment)
    return None


def _worker_group(ray: dict[str, Any], name: str) -> tuple[int, dict[str, Any]] | None:
    groups = ray.get("spec", {}).get("rayClusterConfig", {}).get("workerGroupSpecs") or []
    for index, group in enumerate(groups):
        if group.get("groupName") == name:
            return index, group
    return None


def ray_state(ray: dict[str, Any], ref: WorkloadRef) -> WorkloadState:
    """Replicas and conflicts of a RayService object (pure, for tests too)."""
    spec = ray.get("spec", {})
    serve = yaml.safe_load(spec.get("serveConfigV2") or "") or {}
    replicas: int | None = None
    conflict = None
    if ref.worker_group:
        found = _worker_group(ray, ref.worker_group)
        if found is None:
            return WorkloadState(replicas=None, ready=None, conflict=None)
        replicas = int(found[1].get("replicas", 0))
        if spec.get("rayClusterConfig", {}).get("enableInTreeAutoscaling"):
            conflict = f"RayService/{ref.name} Ray autoscaler (enableInTreeAutoscaling)"
    if ref.serve_deployment:
        deployment = _serve_deployment(serve, ref.serve_deployment)
        if deployment is None:
            return WorkloadState(replicas=None, ready=None, conflict=None)
        num = deployment.get("num_replicas", 1)
        if "autoscaling_config" in deployment or num == "auto":
            conflict = f"RayService/{ref.name} Ray Serve autoscaling_config"
        replicas = int(num) if isinstance(num, int) else replicas
    return WorkloadState(replicas=replicas, ready=None, conflict=conflict)


def ray_scale_patch(ray: dict[str, Any], ref: WorkloadRef, replicas: int) -> list[dict[str, Any]]:
    """JSON patch setting the replicas, guarded by the resourceVersion it was computed from."""
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": ray["metadata"]["resourceVersion"]}
    ]
    if ref.serve_deployment:
        serve = yaml.safe_load(ray["spec"].get("serveConfigV2") or "") or {}
        deployment = _serve_deployment(serve, ref.serve_deployment)
        if deployment is None:
            raise WorkloadNotFound(f"RayService/{ref.name} has no Serve deployment {ref.serve_deployment!r}")
        deployment["num_replicas"] = replicas
        ops.append(
            {"op": "replace", "path": "/spec/serveConfigV2", "value": yaml.safe_dump(serve, sort_keys=False)}
        )
    if ref.worker_group:
        found = _worker_group(ray, ref.worker_group)
        if found is None:
            raise WorkloadNotFound(f"RayService/{ref.name} has no worker group {ref.worker_group!r}")
        index, group = found
        base = f"/spec/rayClusterConfig/workerGroupSpecs/{index}"
        ops.append({"op": "add", "path": f"{base}/replicas", "value": replicas})
        # KubeRay requires minReplicas <= replicas <= maxReplicas: widen the bounds, never narrow.
        if replicas < int(group.get("minReplicas", 0)):
            ops.append({"op": "add", "path": f"{base}/minReplicas", "value": replicas})
        if replicas > int(group.get("maxReplicas", replicas)):
            ops.append({"op": "add", "path": f"{base}/maxReplicas", "value": replicas})
    return ops


class KubeWorkloads:
    def __init__(self, api: client.ApiClient) -> None:
        self.apps = client.AppsV1Api(api)
        self.hpa = client.AutoscalingV2Api(api)
        self.custom = client.CustomObjectsApi(api)

    async def observe(self, namespace: str, ref: WorkloadRef) -> WorkloadState:
        if ref.kind == "RayService":
            ray = await self._ray(namespace, ref.name)
            return (
                WorkloadState(replicas=None, ready=None, conflict=None)
                if ray is None
                else ray_state(ray, ref)
            )
        try:
            deployment = await self.apps.read_namespaced_deployment(ref.name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return WorkloadState(replicas=None, ready=None, conflict=None)
            raise
        return WorkloadState(
            replicas=deployment.spec.replicas if deployment.spec.replicas is not None else 1,
            ready=(deployment.status.ready_replicas or 0) if deployment.status else 0,
            conflict=await self._deployment_conflict(namespace, ref.name),
        )

    async def scale(self, namespace: str, ref: WorkloadRef, replicas: int) -> None:
        if ref.kind == "Deployment":
            await self.apps.patch_namespaced_deployment_scale(
                ref.name, namespace, {"spec": {"replicas": replicas}}
            )
            return
        ray = await self._ray(namespace, ref.name)
        if ray is None:
            raise WorkloadNotFound(f"RayService/{ref.name} not found in {namespace}")
        await self.custom.patch_namespaced_custom_object(
            *RAY[:2], namespace, RAY[2], ref.name, ray_scale_patch(ray, ref, replicas)
        )

    async def _ray(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return cast(
                "dict[str, Any]",
                await self.custom.get_namespaced_custom_object(*RAY[:2], namespace, RAY[2], name),
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def _deployment_conflict(self, namespace: str, name: str) -> str | None:
        hpas = await self.hpa.list_namespaced_horizontal_pod_autoscaler(namespace)
        for hpa in hpas.items:
            target = hpa.spec.scale_target_ref
            if target.kind == "Deployment" and target.name == name:
                return f"HorizontalPodAutoscaler/{hpa.metadata.name}"
        try:
            scaled = await self.custom.list_namespaced_custom_object(*KEDA[:2], namespace, KEDA[2])
        except ApiException as exc:
            if exc.status == 404:  # KEDA is not installed
                return None
            raise
        for obj in scaled.get("items", []):
            target = obj.get("spec", {}).get("scaleTargetRef", {})
            if target.get("name") == name and target.get("kind", "Deployment") == "Deployment":
                return f"ScaledObject/{obj['metadata']['name']}"
        return None
