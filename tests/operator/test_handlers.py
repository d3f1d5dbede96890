"""The kopf wiring: the real operator (kopf run of finserve.operator.handlers) against kmock's
emulated Kubernetes API, which stands in for an API server that cannot run here, and a fake
Prometheus HTTP server. Analysis intervals of one second keep each rollout to a few ticks."""

from __future__ import annotations

from finserve.contracts import RoutingTable

from mro_testkit import RESOURCE_CM, RESOURCE_MRO, create, fast, healthy, rollout_manifest


def phase_is(*phases: str):
    return lambda obj: obj is not None and (obj.get("status") or {}).get("phase") in phases


def routes(kube) -> RoutingTable:
    return RoutingTable.from_configmap_data(kube.objects[RESOURCE_CM, "default", "finserve-routing"]["data"])


async def test_a_healthy_canary_is_promoted(kube, fake_prometheus, run_operator):
    prom, _ = fake_prometheus
    healthy(prom)
    async with run_operator() as runner:
        await create(kube, RESOURCE_MRO, rollout_manifest(strategy=fast()))
        done = await kube.wait_for(RESOURCE_MRO, "default", "bank", phase_is("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded", runner.output
    route = routes(kube).routes["finserve-banking"]
    assert str(route.stable) == "banking77@1.1.0"
    assert route.canary is None
    assert done["status"]["stable"] == "banking77@1.1.0"
    assert done["status"]["observedGeneration"] == 1
    assert done["status"]["lastAnalysis"]["outcome"] == "Successful"
