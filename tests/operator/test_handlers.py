"""The kopf wiring: the real operator (kopf run of finserve.operator.handlers) against kmock's
emulated Kubernetes API, which stands in for an API server that cannot run here, and a fake
Prometheus HTTP server. Analysis intervals of one second keep each rollout to a few ticks; waits
follow the emulator's watch events and their timeouts only stop a hung test."""

from __future__ import annotations

import aiohttp
from mro_testkit import (
    RESOURCE_CM,
    RESOURCE_DEPLOY,
    RESOURCE_EVENTS,
    RESOURCE_MRO,
    api_calls,
    create,
    delete,
    fast,
    healthy,
    patch,
    rollout_manifest,
)
from prometheus_client.parser import text_string_to_metric_families

from finserve.contracts import RoutingTable
from finserve.contracts import metrics as contract_metrics
from finserve.operator.rbac import REQUIRED_RULES, allows
from finserve.operator.status import Phase


def phase_is(*phases: str):
    return lambda obj: obj is not None and (obj.get("status") or {}).get("phase") in phases


def route(kube, model: str = "finserve-banking"):
    return RoutingTable.from_configmap_data(
        kube.objects[RESOURCE_CM, "default", "finserve-routing"]["data"]
    ).routes[model]


def assert_rbac_covers(kube) -> None:
    calls = api_calls(kube)
    assert calls, "the operator made no API calls"
    missing = sorted(c for c in calls if not allows(REQUIRED_RULES, *c))
    assert not missing, f"REQUIRED_RULES lack {missing}"


async def test_a_healthy_canary_is_promoted(kube, fake_prometheus, run_operator):
    prom, _ = fake_prometheus
    healthy(prom)
    async with run_operator() as runner:
        await create(kube, RESOURCE_MRO, rollout_manifest(strategy=fast()))
        done = await kube.wait_for(RESOURCE_MRO, "default", "bank", phase_is("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded", runner.output
    promoted = route(kube)
    assert (str(promoted.stable), promoted.canary) == ("banking77@1.1.0", None)
    assert (done["status"]["stable"], done["status"]["observedGeneration"]) == ("banking77@1.1.0", 1)
    assert done["status"]["lastAnalysis"]["outcome"] == "Successful"
    weights = [
        RoutingTable.from_configmap_data(v["data"]).routes["finserve-banking"].canary_weight
        for v in kube.objects[RESOURCE_CM, "default", "finserve-routing"].history
        if v is not None
    ]
    assert weights == [50, 100, 0]  # every step was routed, then the promotion
    reasons = {e["reason"] for (res, _, _), e in kube.objects.items() if res == RESOURCE_EVENTS}
    assert {"Progressing", "StepAdvanced", "Promoting", "Promoted"} <= reasons
    assert not any(k.startswith("kopf.zalando.org") for k in done["metadata"].get("annotations", {}))
    assert "kopf" not in done["status"]  # kopf's bookkeeping stays out of the status
    assert_rbac_covers(kube)


async def test_an_invalid_spec_is_reported_and_others_still_roll_out(kube, fake_prometheus, run_operator):
    prom, _ = fake_prometheus
    healthy(prom)
    same = {"adapter": "banking77", "version": "1.0.0"}
    async with run_operator() as runner:
        await create(
            kube, RESOURCE_MRO, rollout_manifest(name="broken", stable=same, canary=same, strategy=fast())
        )
        await create(kube, RESOURCE_MRO, rollout_manifest(name="good", strategy=fast()))
        broken = await kube.wait_for(RESOURCE_MRO, "default", "broken", phase_is("Failed"))
        good = await kube.wait_for(RESOURCE_MRO, "default", "good", phase_is("Succeeded"))
    conditions = {c["type"]: c for c in broken["status"]["conditions"]}
    assert (conditions["Valid"]["status"], conditions["Valid"]["reason"]) == ("False", "InvalidSpec")
    assert "is the stable version already" in broken["status"]["message"]
    assert good["status"]["phase"] == "Succeeded", runner.output


async def test_abort_annotation_rolls_back(kube, fake_prometheus, run_operator):
    prom, _ = fake_prometheus
    healthy(prom)
    async with run_operator():
        await create(kube, RESOURCE_MRO, rollout_manifest(strategy=fast(stepInterval="1h")))
        await kube.wait_for(RESOURCE_MRO, "default", "bank", phase_is("Progressing"))
        assert route(kube).canary_weight == 50
        await patch(
            kube,
            RESOURCE_MRO,
            "default",
            "bank",
            {"metadata": {"annotations": {"finserve.dev/abort": "2025-01-01T00:00:00Z"}}},
        )
        aborted = await kube.wait_for(RESOURCE_MRO, "default", "bank", phase_is("Aborted"))
    assert aborted["status"]["handledCommands"] == {"abort": "2025-01-01T00:00:00Z"}
    rolled_back = route(kube)
    assert (str(rolled_back.stable), rolled_back.canary, rolled_back.canary_weight) == (
        "banking77@1.0.0",
        None,
        0,
    )


async def test_retry_annotation_starts_an_aborted_rollout_again_from_the_first_step(
    kube, fake_prometheus, run_operator
):
    prom, _ = fake_prometheus
    healthy(prom)
    async with run_operator():
        await create(kube, RESOURCE_MRO, rollout_manifest(strategy=fast(stepInterval="1h")))
        await kube.wait_for(RESOURCE_MRO, "default", "bank", phase_is("Progressing"))
        await patch(
            kube, RESOURCE_MRO, "default", "bank", {"metadata": {"annotations": {"finserve.dev/abort": "t1"}}}
        )
        await kube.wait_for(RESOURCE_MRO, "default", "bank", phase_is("Aborted"))
        assert route(kube).canary is None
        await patch(
            kube, RESOURCE_MRO, "default", "bank", {"metadata": {"annotations": {"finserve.dev/retry": "t2"}}}
        )
        again = await kube.wait_for(RESOURCE_MRO, "default", "bank", phase_is("Progressing"))
    assert again["status"]["handledCommands"] == {"abort": "t1", "retry": "t2"}
    assert again["status"]["currentStepIndex"] == 0 and again["status"]["failedChecks"] == 0
    assert str(route(kube).canary) == "banking77@1.1.0" and route(kube).canary_weight > 0


async def test_a_restarted_operator_resumes_from_status(kube, fake_prometheus, run_operator):
    prom, _ = fake_prometheus
    healthy(prom)
    manifest = rollout_manifest(strategy=fast(steps=[20, 60, 100], stepInterval="2s"))
    at_60 = lambda obj: obj is not None and (obj.get("status") or {}).get("canaryWeight") == 60
    async with run_operator():
        await create(kube, RESOURCE_MRO, manifest)
        await kube.wait_for(RESOURCE_MRO, "default", "bank", at_60)
    async with run_operator():
        done = await kube.wait_for(RESOURCE_MRO, "default", "bank", phase_is("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded"
    weights = [
        RoutingTable.from_configmap_data(v["data"]).routes["finserve-banking"].canary_weight
        for v in kube.objects[RESOURCE_CM, "default", "finserve-routing"].history
        if v is not None
    ]
    assert weights == [20, 60, 100, 0]  # no step was routed twice: the restart did not start over


async def test_the_autoscaler_scales_the_generator_pool(kube, fake_prometheus, run_operator):
    prom, _ = fake_prometheus
    healthy(prom)
    prom.set("DCGM_FI_DEV_GPU_UTIL", 90.0)
    await create(
        kube,
        RESOURCE_DEPLOY,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "gen", "namespace": "default"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "gen"}},
                "template": {
                    "metadata": {"labels": {"app": "gen"}},
                    "spec": {"containers": [{"name": "g", "image": "x"}]},
                },
            },
            "status": {"replicas": 2, "readyReplicas": 2},
        },
    )
    scaled = {"maxReplicas": 6, "targetGPUUtilization": 60, "target": {"kind": "Deployment", "name": "gen"}}
    async with run_operator():
        await create(
            kube, RESOURCE_MRO, rollout_manifest(strategy=fast(stepInterval="1h"), autoscaling=scaled)
        )
        obj = await kube.wait_for(
            RESOURCE_MRO,
            "default",
            "bank",
            lambda o: o is not None and bool((o.get("status") or {}).get("replicas")),
        )
        # Read now: the timer's next tick (15 s on) may scale again while the operator shuts down.
        replicas = kube.objects[RESOURCE_DEPLOY, "default", "gen"]["spec"]["replicas"]
    (pool,) = obj["status"]["replicas"]
    assert (pool["pool"], pool["reason"], pool["desiredReplicas"], pool["gpuUtilization"]) == (
        "shared",
        "ScaledUp",
        3,
        90.0,
    )
    assert replicas == 3
    assert obj["status"]["phase"] == "Progressing"  # the rollout's fields survive the autoscaler's writes
    assert_rbac_covers(kube)


async def test_deleting_a_rollout_midway_returns_traffic_to_stable(kube, fake_prometheus, run_operator):
    prom, _ = fake_prometheus
    healthy(prom)
    async with run_operator():
        await create(kube, RESOURCE_MRO, rollout_manifest(strategy=fast(stepInterval="1h")))
        await kube.wait_for(RESOURCE_MRO, "default", "bank", phase_is("Progressing"))
        assert route(kube).canary_weight == 50
        await delete(kube, RESOURCE_MRO, "default", "bank")
        await kube.wait_for(RESOURCE_MRO, "default", "bank", lambda obj: obj is None)
    kept = route(kube)
    assert (str(kept.stable), kept.canary, kept.canary_weight) == ("banking77@1.0.0", None, 0)
    assert_rbac_covers(kube)


async def rollout_gauges(url: str, rollout: str) -> tuple[dict[str, float], dict[str, float]]:
    """One rollout's series from the operator's /metrics: ({phase: value}, {model: canary weight})."""
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        text = await response.text()
    phases, weights = {}, {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("rollout") != rollout:
                continue
            assert (labels["rollout_namespace"], labels["model"]) == ("default", f"finserve-{rollout}")
            if sample.name == contract_metrics.ROLLOUT_PHASE:
                phases[labels["phase"]] = sample.value
            elif sample.name == contract_metrics.ROLLOUT_CANARY_WEIGHT:
                weights[labels["model"]] = sample.value
    return phases, weights


def only(phase: str) -> dict[str, float]:
    return {p.value: 1.0 if p.value == phase else 0.0 for p in Phase}


async def test_the_operator_exports_phase_and_canary_weight_as_a_rollout_progresses_and_fails(
    kube, fake_prometheus, run_operator, operator_metrics
):
    prom, _ = fake_prometheus
    healthy(prom)
    held = fast(stepInterval="1h")  # healthy checks keep the canary at 50 % until the errors come
    async with run_operator() as runner:
        for name in ("bank", "card"):
            manifest = rollout_manifest(name=name, model=f"finserve-{name}", strategy=held)
            await create(kube, RESOURCE_MRO, manifest)
            await kube.wait_for(RESOURCE_MRO, "default", name, phase_is("Progressing"))
        # Gauges are set before the status is written, so the status seen here is what they show.
        progressing = await rollout_gauges(operator_metrics, "bank")
        assert progressing == (only("Progressing"), {"finserve-bank": 50.0})
        prom.set('code=~"5..', 0.4)
        for name in ("bank", "card"):
            await kube.wait_for(RESOURCE_MRO, "default", name, phase_is("Failed"))
        assert await rollout_gauges(operator_metrics, "bank") == (only("Failed"), {"finserve-bank": 0.0})
        await delete(kube, RESOURCE_MRO, "default", "bank")
        await kube.wait_for(RESOURCE_MRO, "default", "bank", lambda obj: obj is None)
        assert await rollout_gauges(operator_metrics, "bank") == ({}, {})  # its series went with it
        assert await rollout_gauges(operator_metrics, "card") == (only("Failed"), {"finserve-card": 0.0})
    assert "Traceback" not in runner.output
