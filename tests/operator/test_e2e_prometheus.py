"""End to end: the operator (kopf, against kmock's emulated Kubernetes API, which stands in for an
API server that cannot run here) analyses canaries with a real Prometheus server (Debian's
`prometheus`) scraping a serving endpoint that follows the operator's routing table.

The serving endpoint here is a stand-in for the serving stack (standin_serving.py, its own
process): it reads the routing table from a file, as serving reads its mounted ConfigMap, picks
stable or canary by weight, misbehaves for the adapter versions it is told to, and exposes the
contract metrics (contracts/metrics.py) with prometheus_client. Swapping in the real app is a
change of the ``serving`` fixture: anything that serves ``POST /v1/chat/completions`` from the
routing-table file and exposes ``/metrics`` fits. A second process sends the load.

Three rollouts run at once in one namespace: a healthy canary is promoted, one that answers with
errors and one that leaks PII into its outputs are rolled back. Waits follow watch events and
process output; their timeouts only stop a hung test.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from finserve.contracts import RoutingTable
from mro_testkit import RESOURCE_CM, RESOURCE_MRO, create, rollout_manifest

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="needs Debian's prometheus package"
)

SCRAPE_SECONDS = 1
STANDIN = Path(__file__).with_name("standin_serving.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Serving:
    url: str
    scrape_target: str
    routes_file: Path


async def started(*args: str, ready: bytes, stream: str = "stdout") -> asyncio.subprocess.Process:
    """A process, once it has written ``ready`` (read from its own output: no polling)."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE if stream == "stdout" else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE if stream == "stderr" else asyncio.subprocess.DEVNULL,
    )
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    assert pipe is not None
    async with asyncio.timeout(60):  # hang guard
        while ready not in (line := await pipe.readline()):
            if not line:
                raise RuntimeError(f"{args[0]} exited before it was ready")
    return proc


async def stopped(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        await proc.wait()


@pytest.fixture()
async def serving(tmp_path: Path) -> AsyncIterator[Serving]:
    """The stand-in serving process (standin_serving.py serve); the real app fits here too."""
    routes_file = tmp_path / "routing" / "routes.json"
    port = free_port()
    proc = await started(
        sys.executable,
        str(STANDIN),
        "serve",
        "--port",
        str(port),
        "--routes",
        str(routes_file),
        "--broken",
        "banking77@9.9.9",
        "--leaky",
        "banking77@8.8.8",
        ready=b"ready",
    )
    try:
        yield Serving(
            url=f"http://127.0.0.1:{port}", scrape_target=f"127.0.0.1:{port}", routes_file=routes_file
        )
    finally:
        await stopped(proc)


@pytest.fixture()
async def prometheus(serving: Serving, tmp_path: Path) -> AsyncIterator[str]:
    """A real Prometheus scraping the serving endpoint every second; its URL once it is ready."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": f"{SCRAPE_SECONDS}s"},
                "scrape_configs": [
                    {"job_name": "finserve", "static_configs": [{"targets": [serving.scrape_target]}]}
                ],
            }
        )
    )
    port = free_port()
    proc = await started(
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        ready=b"Server is ready to receive web requests",
        stream="stderr",
    )
    assert proc.stderr is not None
    drain = asyncio.create_task(proc.stderr.read())  # keep the pipe from filling up
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await stopped(proc)
        drain.cancel()


async def project_configmap(kube, routes_file: Path) -> None:
    """Copy the routing ConfigMap to a file whenever it changes, as the kubelet does for a volume."""
    routes_file.parent.mkdir(parents=True, exist_ok=True)
    seen = None
    while True:
        obj = await kube.wait_for(
            RESOURCE_CM,
            "default",
            "finserve-routing",
            lambda o, seen=seen: o is not None and o["metadata"]["resourceVersion"] != seen,
            timeout=3600,
        )
        seen = obj["metadata"]["resourceVersion"]
        RoutingTable.from_configmap_data(obj["data"]).save(routes_file)


def e2e_rollout(name: str, model: str, canary_version: str) -> dict:
    return rollout_manifest(
        name=name,
        model=model,
        canary={"adapter": "banking77", "version": canary_version},
        strategy={
            "steps": [50, 100],
            "stepInterval": "0s",
            "analysis": {"interval": "5s", "failureThreshold": 2, "minRequests": 10},
        },
    )


async def test_real_prometheus_rolls_back_a_failing_canary_and_promotes_a_healthy_one(
    kube, serving, prometheus, run_operator, monkeypatch
):
    monkeypatch.setenv("FINSERVE_PROMETHEUS_URL", prometheus)
    done = lambda o: o is not None and (o.get("status") or {}).get("phase") in ("Succeeded", "Failed")  # noqa: E731
    background = [asyncio.create_task(project_configmap(kube, serving.routes_file))]
    load = None
    try:
        async with run_operator() as runner:
            await create(kube, RESOURCE_MRO, e2e_rollout("good", "finserve-good", "1.1.0"))
            await create(kube, RESOURCE_MRO, e2e_rollout("bad", "finserve-bad", "9.9.9"))
            await create(kube, RESOURCE_MRO, e2e_rollout("leaky", "finserve-leaky", "8.8.8"))
            models = [
                arg
                for model in ("finserve-good", "finserve-bad", "finserve-leaky")
                for arg in ("--model", model)
            ]
            load = await asyncio.create_subprocess_exec(
                sys.executable, str(STANDIN), "load", "--url", serving.url, *models
            )
            good = await kube.wait_for(RESOURCE_MRO, "default", "good", done, timeout=180)
            bad = await kube.wait_for(RESOURCE_MRO, "default", "bad", done, timeout=180)
            leaky = await kube.wait_for(RESOURCE_MRO, "default", "leaky", done, timeout=180)
    finally:
        for task in background:
            task.cancel()
        if load is not None:
            await stopped(load)
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
