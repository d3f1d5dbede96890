"""Pool workloads against kmock's emulated Kubernetes API (no real API server can run here):
Deployment replicas through the scale subresource, RayService Serve/worker replicas, and the
other autoscalers the operator must not fight."""

from __future__ import annotations

import yaml
from mro_testkit import RESOURCE_DEPLOY, RESOURCE_HPA, RESOURCE_RAY, create

from finserve.operator.adapters.workloads import KubeWorkloads, ray_state
from finserve.operator.spec import WorkloadRef

NS = "default"
GEN = WorkloadRef(kind="Deployment", name="gen")
RAY = WorkloadRef(kind="RayService", name="finserve", serve_deployment="Generator", worker_group="gpu")


def deployment(name: str = "gen", replicas: int = 2, ready: int = 2) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "gen", "image": "finserve:dev"}]},
            },
        },
        "status": {"replicas": replicas, "readyReplicas": ready},
    }


def rayservice(autoscaling: bool = False, serve_autoscaling: bool = False) -> dict:
    generator: dict = {"name": "Generator", "num_replicas": 2, "ray_actor_options": {"num_gpus": 1}}
    if serve_autoscaling:
        generator["autoscaling_config"] = {"min_replicas": 1, "max_replicas": 4}
    serve = {
        "applications": [
            {
                "name": "finserve",
                "import_path": "finserve.serving.app:build",
                "deployments": [{"name": "Gateway", "num_replicas": 1}, generator],
            }
        ]
    }
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "finserve", "namespace": NS},
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve, sort_keys=False),
            "rayClusterConfig": {
                "enableInTreeAutoscaling": autoscaling,
                "headGroupSpec": {"rayStartParams": {}},
                "workerGroupSpecs": [
                    {"groupName": "cpu", "replicas": 1, "minReplicas": 1, "maxReplicas": 2},
                    {"groupName": "gpu", "replicas": 2, "minReplicas": 1, "maxReplicas": 3},
                ],
            },
        },
    }


async def test_deployment_replicas_and_scale(kube, api):
    await create(kube, RESOURCE_DEPLOY, deployment())
    workloads = KubeWorkloads(api)
    state = await workloads.observe(NS, GEN)
    assert (state.replicas, state.ready, state.conflict) == (2, 2, None)
    await workloads.scale(NS, GEN, 5)
    assert kube.objects[RESOURCE_DEPLOY, NS, "gen"]["spec"]["replicas"] == 5
    assert any(r.subresource == "scale" and r.method == "PATCH" for r in kube)


async def test_missing_deployment(kube, api):
    state = await KubeWorkloads(api).observe(NS, GEN)
    assert state.replicas is None


async def test_an_hpa_on_the_deployment_is_a_conflict(kube, api):
    await create(kube, RESOURCE_DEPLOY, deployment())
    await create(
        kube,
        RESOURCE_HPA,
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "gen-hpa", "namespace": NS},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gen"},
                "minReplicas": 1,
                "maxReplicas": 4,
            },
        },
    )
    state = await KubeWorkloads(api).observe(NS, GEN)
    assert state.conflict == "HorizontalPodAutoscaler/gen-hpa"
    other = await KubeWorkloads(api).observe(NS, WorkloadRef(kind="Deployment", name="other"))
    assert other.conflict is None and other.replicas is None


async def test_a_keda_scaledobject_is_a_conflict(kube, api):
    kube.resources["keda.sh/v1alpha1/scaledobjects"] = kube.ResourceInfo(
        kind="ScaledObject", namespaced=True, verbs={"list", "get"}
    )
    await create(kube, RESOURCE_DEPLOY, deployment())
    await create(
        kube,
        "keda.sh/v1alpha1/scaledobjects",
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "gen-keda", "namespace": NS},
            "spec": {"scaleTargetRef": {"name": "gen"}, "triggers": []},
        },
    )
    assert (await KubeWorkloads(api).observe(NS, GEN)).conflict == "ScaledObject/gen-keda"


async def test_rayservice_serve_and_worker_replicas(kube, api):
    await create(kube, RESOURCE_RAY, rayservice())
    workloads = KubeWorkloads(api)
    assert (await workloads.observe(NS, RAY)).replicas == 2
    await workloads.scale(NS, RAY, 4)
    ray = kube.objects[RESOURCE_RAY, NS, "finserve"]
    serve = yaml.safe_load(ray["spec"]["serveConfigV2"])
    generator = serve["applications"][0]["deployments"][1]
    assert generator["num_replicas"] == 4 and generator["ray_actor_options"] == {"num_gpus": 1}
    groups = ray["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert (groups[1]["replicas"], groups[1]["maxReplicas"], groups[1]["minReplicas"]) == (4, 4, 1)
    assert groups[0]["replicas"] == 1  # other groups untouched
    assert serve["applications"][0]["deployments"][0]["num_replicas"] == 1


def test_ray_autoscalers_are_conflicts():
    assert "enableInTreeAutoscaling" in ray_state(rayservice(autoscaling=True), RAY).conflict
    assert "autoscaling_config" in ray_state(rayservice(serve_autoscaling=True), RAY).conflict
    serve_only = WorkloadRef(kind="RayService", name="finserve", serve_deployment="Generator")
    assert ray_state(rayservice(autoscaling=True), serve_only).conflict is None
    assert (
        ray_state(rayservice(), WorkloadRef(kind="RayService", name="finserve", worker_group="tpu")).replicas
        is None
    )
