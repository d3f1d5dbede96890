"""End to end: the operator (kopf, against kmock's emulated Kubernetes API, which stands in for an
API server that cannot run here) analyses canaries with a real Prometheus server (Debian's
`prometheus`) scraping a serving endpoint that follows the operator's routing table.

The serving endpoint here is a stand-in for the serving stack: a small aiohttp app that reads the
routing table from a file (as serving reads its mounted ConfigMap), picks stable or canary by
weight, answers 500 for the adapter versions it is told are broken, and exposes the contract
metrics (contracts/metrics.py) with prometheus_client. Swapping in the real app is a change of the
``serving`` fixture: anything that serves ``POST /v1/chat/completions`` from the routing-table file
and exposes ``/metrics`` fits.

Three rollouts run at once in one namespace: a healthy canary is promoted, one that answers with
errors and one that leaks PII into its outputs are rolled back. Waits follow watch events; their timeouts only stop a hung test.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import aiohttp.web
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from finserve.contracts import RoutingTable
from finserve.contracts import metrics as m

from mro_testkit import RESOURCE_CM, RESOURCE_MRO, create, rollout_manifest

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus package")

SCRAPE_SECONDS = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandInServing:
    """Routes by the table's weights and records the contract metrics per adapter version."""

    def __init__(self, routes_file: Path, broken: set[str], leaky: set[str]) -> None:
        self.routes_file = routes_file
        self.broken = broken
        self.leaky = leaky
        self.random = random.Random(7)
        self.registry = CollectorRegistry()
        labels = list(m.MODEL_LABELS)
        self.requests = Counter(m.REQUESTS_TOTAL, "requests", [*labels, "code"], registry=self.registry)
        self.latency = Histogram(m.REQUEST_DURATION, "latency", labels, registry=self.registry)
        self.pii = Counter(m.PII_FINDINGS_TOTAL, "pii", [*labels, "stage", "entity"], registry=self.registry)
        self.intent = Counter(m.INTENT_AGREEMENT_TOTAL, "intent", [*labels, "agree"], registry=self.registry)

    async def chat(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        model = (await request.json())["model"]
        route = RoutingTable.load(self.routes_file).routes.get(model)
        if route is None:
            return aiohttp.web.json_response({"error": "unknown model"}, status=404)
        use_canary = route.canary is not None and self.random.random() * 100 < route.canary_weight
        adapter = route.canary if use_canary and route.canary is not None else route.stable
        labels = {"model": model, "adapter": adapter.name, "version": adapter.version}
        started = time.perf_counter()
        failed = str(adapter) in self.broken and self.random.random() < 0.5
        self.latency.labels(**labels).observe(time.perf_counter() - started + 0.05)
        self.requests.labels(**labels, code="500" if failed else "200").inc()
        if not failed:
            self.intent.labels(**labels, agree="true").inc()
        if str(adapter) in self.leaky and self.random.random() < 0.1:
            self.pii.labels(**labels, stage="output", entity="IBAN_CODE").inc()
        return aiohttp.web.json_response({"adapter": str(adapter)}, status=500 if failed else 200)

    async def metrics(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=generate_latest(self.registry), content_type="text/plain")


@dataclass
class Serving:
    url: str
    scrape_target: str
    routes_file: Path


@pytest.fixture()
async def serving(tmp_path: Path) -> AsyncIterator[Serving]:
    routes_file = tmp_path / "routing" / "routes.json"
    app_state = StandInServing(routes_file, broken={"banking77@9.9.9"}, leaky={"banking77@8.8.8"})
    app = aiohttp.web.Application()
    app.router.add_post("/v1/chat/completions", app_state.chat)
    app.router.add_get("/metrics", app_state.metrics)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Serving(url=f"http://127.0.0.1:{port}", scrape_target=f"127.0.0.1:{port}", routes_file=routes_file)
    finally:
        await runner.cleanup()


@pytest.fixture()
async def prometheus(serving: Serving, tmp_path: Path) -> AsyncIterator[str]:
    """A real Prometheus scraping the serving endpoint every second; its URL once it is ready."""
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s"},
        "scrape_configs": [{"job_name": "finserve", "static_configs": [{"targets": [serving.scrape_target]}]}],
    }))
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        "prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(60):  # hang guard: readiness is read from Prometheus's own log
            assert proc.stderr is not None
            while b"Server is ready to receive web requests" not in await proc.stderr.readline():
                if proc.returncode is not None:
                    raise RuntimeError("prometheus exited")
        drain = asyncio.create_task(proc.stderr.read())  # keep the pipe from filling up
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        await proc.wait()
    drain.cancel()


async def project_configmap(kube, routes_file: Path) -> None:
    """Copy the routing ConfigMap to a file whenever it changes, as the kubelet does for a volume."""
    routes_file.parent.mkdir(parents=True, exist_ok=True)
    seen = None
    while True:
        obj = await kube.wait_for(RESOURCE_CM, "default", "finserve-routing",
                                  lambda o: o is not None and o["metadata"]["resourceVersion"] != seen, timeout=3600)
        seen = obj["metadata"]["resourceVersion"]
        RoutingTable.from_configmap_data(obj["data"]).save(routes_file)


async def traffic(url: str, models: list[str]) -> None:
    """A steady load: about 40 requests a second for each model."""
    async with aiohttp.ClientSession() as http:
        while True:
            for model in models:
                for _ in range(2):
                    async with http.post(f"{url}/v1/chat/completions", json={"model": model}) as response:
                        await response.read()
            await asyncio.sleep(0.05)  # pacing the load, not waiting for any result


def e2e_rollout(name: str, model: str, canary_version: str) -> dict:
    return rollout_manifest(
        name=name, model=model, canary={"adapter": "banking77", "version": canary_version},
        strategy={"steps": [50, 100], "stepInterval": "0s",
                  "analysis": {"interval": "5s", "failureThreshold": 2, "minRequests": 10}})


async def test_real_prometheus_rolls_back_a_failing_canary_and_promotes_a_healthy_one(
    kube, serving, prometheus, run_operator, monkeypatch
):
    monkeypatch.setenv("FINSERVE_PROMETHEUS_URL", prometheus)
    done = lambda o: o is not None and (o.get("status") or {}).get("phase") in ("Succeeded", "Failed")  # noqa: E731
    background = [asyncio.create_task(project_configmap(kube, serving.routes_file))]
    try:
        async with run_operator() as runner:
            await create(kube, RESOURCE_MRO, e2e_rollout("good", "finserve-good", "1.1.0"))
            await create(kube, RESOURCE_MRO, e2e_rollout("bad", "finserve-bad", "9.9.9"))
            await create(kube, RESOURCE_MRO, e2e_rollout("leaky", "finserve-leaky", "8.8.8"))
            models = ["finserve-good", "finserve-bad", "finserve-leaky"]
            background.append(asyncio.create_task(traffic(serving.url, models)))
            good = await kube.wait_for(RESOURCE_MRO, "default", "good", done, timeout=60)
            bad = await kube.wait_for(RESOURCE_MRO, "default", "bad", done, timeout=60)
            leaky = await kube.wait_for(RESOURCE_MRO, "default", "leaky", done, timeout=60)
    except BaseException:
        import json
        for n in ("good", "bad", "leaky"):
            st = kube.objects[RESOURCE_MRO, "default", n].get("status")
            print(n, json.dumps({k: st.get(k) for k in ("phase", "message", "lastAnalysis")}, indent=1)[:3000])
        raise
    finally:
        for task in background:
            task.cancel()
    assert good["status"]["phase"] == "Succeeded", runner.output[-5000:]
    assert bad["status"]["phase"] == "Failed", runner.output[-5000:]
    evidence = {mr["name"]: mr for mr in bad["status"]["lastAnalysis"]["metrics"]}
    assert evidence["error-rate"]["outcome"] == "Failed" and evidence["error-rate"]["value"] > 0.2
    assert good["status"]["lastAnalysis"]["requests"] >= 10
    # Every built-in query returned a number from the real Prometheus, none was "no data".
    assert all(mr.get("value") is not None for mr in good["status"]["lastAnalysis"]["metrics"])
    assert leaky["status"]["phase"] == "Failed", runner.output[-5000:]
    leaked = {mr["name"]: mr for mr in leaky["status"]["lastAnalysis"]["metrics"]}
    assert leaked["pii-output"]["outcome"] == "Failed" and leaked["pii-output"]["value"] >= 1
    assert leaked["error-rate"]["outcome"] == "Successful"
    table = RoutingTable.from_configmap_data(kube.objects[RESOURCE_CM, "default", "finserve-routing"]["data"])
    assert str(table.routes["finserve-good"].stable) == "banking77@1.1.0"
    assert table.routes["finserve-good"].canary is None
    assert str(table.routes["finserve-bad"].stable) == "banking77@1.0.0"
    assert (table.routes["finserve-bad"].canary, table.routes["finserve-bad"].canary_weight) == (None, 0)
    assert str(table.routes["finserve-leaky"].stable) == "banking77@1.0.0"
