"""End to end: the operator (kopf, against kmock's emulated Kubernetes API, which stands in for an
API server that cannot run here) analyses canaries with a real Prometheus server (Debian's
`prometheus`) scraping the real serving stack, which follows the operator's routing table.

Serving is ``finserve.serving.local.create_local_app`` under uvicorn in its own process
(local_serving.py): real PII guard, MiniLM + Milvus Lite retrieval, SmolLM2 with PEFT LoRA
adapters from a real registry, the contract metrics on /metrics. It reads the routing table from
a file that the test keeps equal to the operator's ConfigMap, as the kubelet does for a mounted
volume. One more process per model sends short chat requests (2 completion tokens).

Two rollouts run at once: a healthy canary (a second valid adapter version) is promoted; a canary
whose adapter files were altered after publishing fails the registry's checksum check, so serving
answers 500 (adapter_corrupt) for every request routed to it, and the operator's built-in
error-rate analysis rolls it back. Latency is bounded loosely: how fast this shared machine runs
the model is not under test. Waits follow watch events and process output; their timeouts only
stop a hung test. No real path here makes an adapter put PII into two-token answers, so the PII
abort is left to the tick scenarios; here the healthy canary's pii-output is measured as 0.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import yaml
from kbutil import banking77_rows, build_index
from local_serving import INTENTS, publish_loras, serving_config
from mro_testkit import RESOURCE_CM, RESOURCE_MRO, create, rollout_manifest
from netutil import free_port
from prometheus_client.parser import text_string_to_metric_families

from finserve.contracts import AdapterRegistry, RoutingTable

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus package"),
]

SCRAPE_SECONDS = 1
LAUNCHER = Path(__file__).with_name("local_serving.py")
STABLE, HEALTHY, CORRUPT = "1.0.0", "1.1.0", "9.9.9"
HANG_GUARD = 900  # seconds; only stops a hung test (a loaded 2-core machine is slow, not wrong)


@dataclass
class Serving:
    url: str
    routes_file: Path
    log: Path


async def started(*args: str, ready: bytes, log: Path, stream: str = "stdout"):
    """A process and its ready line, once it has written one containing ``ready`` (no polling).

    The other stream goes to ``log``, so a chatty process never blocks on a full pipe.
    """
    # A local file opened once, before the process starts: nothing to gain from a thread.
    with open(log, "wb") as sink:  # noqa: ASYNC230
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.PIPE if stream == "stdout" else sink,
            stderr=asyncio.subprocess.PIPE if stream == "stderr" else sink,
        )
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    assert pipe is not None
    async with asyncio.timeout(HANG_GUARD):
        while ready not in (line := await pipe.readline()):
            if not line:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{' '.join(args[:3])} exited before it was ready\n{tail}")
    return proc, line


async def stopped(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        await proc.wait()


@pytest.fixture(scope="module")
def stack_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Index and registry, built once: three real LoRA versions of banking77; CORRUPT's weights are
    altered after publishing, as a broken upload or a tampered bucket would leave them."""
    work = tmp_path_factory.mktemp("stack")
    index = build_index(work / "milvus.db", banking77_rows(INTENTS, per_intent=8))
    registry = AdapterRegistry(work / "registry")
    publish_loras(registry, "banking77", [STABLE, HEALTHY, CORRUPT], work)
    weights = work / "registry" / "banking77" / CORRUPT / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    return {"index": index, "registry": work / "registry"}


@pytest.fixture()
async def serving(stack_files: dict[str, Path], tmp_path: Path) -> AsyncIterator[Serving]:
    """The real serving app (local_serving.py serve), routing from a file the test keeps current."""
    routes_file = tmp_path / "routing" / "routes.json"
    cfg = serving_config(
        tmp_path,
        stack_files["index"],
        stack_files["registry"],
        routes_file,
        preload=[f"banking77@{STABLE}", f"banking77@{HEALTHY}"],
    )
    config = tmp_path / "serving.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    log = tmp_path / "serving.log"
    proc, line = await started(
        sys.executable, str(LAUNCHER), "serve", "--config", str(config), ready=b"ready", log=log
    )
    port = int(line.split()[-1])
    try:
        yield Serving(url=f"http://127.0.0.1:{port}", routes_file=routes_file, log=log)
    finally:
        await stopped(proc)


@pytest.fixture()
async def prometheus(serving: Serving, tmp_path: Path) -> AsyncIterator[str]:
    """A real Prometheus scraping the serving endpoint every second; its URL once it is ready."""
    config = tmp_path / "prometheus.yml"
    target = serving.url.removeprefix("http://")
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": f"{SCRAPE_SECONDS}s"},
                "scrape_configs": [{"job_name": "finserve", "static_configs": [{"targets": [target]}]}],
            }
        )
    )
    port = free_port()
    proc, _ = await started(
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        ready=b"Server is ready to receive web requests",
        log=tmp_path / "prometheus.log",
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
            "analysis": {
                "interval": "10s",
                "failureThreshold": 2,
                "minRequests": 3,
                # The built-ins with their default bounds, but latency: the machine is not under test.
                # Not intent-quality: it compares a version's own intent head with the retrieval vote, and
                # these test adapters carry no head, so it would have no data and hold the rollout
                # Inconclusive (as it should); tests/operator/test_queries.py covers its query.
                "metrics": [
                    {"name": "error-rate"},
                    {"name": "latency-p95", "max": 600},
                    {"name": "pii-output"},
                ],
            },
        },
    )


async def chat(url: str, model: str, adapter: str) -> tuple[int, dict]:
    body = {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "Where is my card?"}]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/v1/chat/completions", json=body, headers={"x-finserve-adapter": adapter}
        ) as response,
    ):
        return response.status, await response.json()


async def operator_gauges(url: str) -> dict[tuple[str, str], float]:
    """(rollout, phase or 'weight') -> value from the operator's own /metrics."""
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
    return {
        (s.labels["rollout"], s.labels.get("phase", "weight")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("finserve_rollout_")
    }


async def test_real_prometheus_rolls_back_a_failing_canary_and_promotes_a_healthy_one(
    kube, serving, prometheus, run_operator, operator_metrics, monkeypatch
):
    monkeypatch.setenv("FINSERVE_OPERATOR__PROMETHEUS__URL", prometheus)
    done = lambda o: o is not None and (o.get("status") or {}).get("phase") in ("Succeeded", "Failed")
    background = [asyncio.create_task(project_configmap(kube, serving.routes_file))]
    loads: dict[str, asyncio.subprocess.Process] = {}
    try:
        async with run_operator() as runner:
            await create(kube, RESOURCE_MRO, e2e_rollout("good", "finserve-good", HEALTHY))
            await create(kube, RESOURCE_MRO, e2e_rollout("bad", "finserve-bad", CORRUPT))
            for model in ("finserve-good", "finserve-bad"):  # one load process per model
                loads[model] = await asyncio.create_subprocess_exec(
                    sys.executable, str(LAUNCHER), "load", "--url", serving.url, "--model", model
                )
            bad = await kube.wait_for(RESOURCE_MRO, "default", "bad", done, timeout=HANG_GUARD)
            await stopped(loads["finserve-bad"])  # its traffic is all on stable now: spare the CPU
            good = await kube.wait_for(RESOURCE_MRO, "default", "good", done, timeout=HANG_GUARD)
            gauges = await operator_gauges(operator_metrics)
    finally:
        for task in background:
            task.cancel()
        for proc in loads.values():
            await stopped(proc)
    serving_log = serving.log.read_text(errors="replace")[-3000:]
    context = f"{runner.output[-4000:]}\n--- serving log ---\n{serving_log}"
    assert bad["status"]["phase"] == "Failed", context
    assert good["status"]["phase"] == "Succeeded", context

    # The failing canary: the registry refused its files, serving answered 500 for all its requests.
    evidence = {mr["name"]: mr for mr in bad["status"]["lastAnalysis"]["metrics"]}
    assert (evidence["error-rate"]["outcome"], evidence["error-rate"]["value"]) == ("Failed", 1.0)
    # Rolled back, the canary has left the route: it can no longer be forced with x-finserve-adapter either.
    status, answer = await chat(serving.url, "finserve-bad", f"banking77@{CORRUPT}")
    assert (status, answer["error"]["code"], answer["error"]["param"]) == (
        403,
        "forbidden",
        "x-finserve-adapter",
    )

    # The healthy canary: enough requests, and every built-in query returned a number, none "no data".
    assert good["status"]["lastAnalysis"]["requests"] >= 3
    assert {mr["name"]: mr["outcome"] for mr in good["status"]["lastAnalysis"]["metrics"]} == dict.fromkeys(
        ("error-rate", "latency-p95", "pii-output"), "Successful"
    )
    assert all(mr.get("value") is not None for mr in good["status"]["lastAnalysis"]["metrics"])
    status, answer = await chat(serving.url, "finserve-good", f"banking77@{HEALTHY}")
    assert (status, answer["finserve"]["adapter"]) == (200, f"banking77@{HEALTHY}")

    table = RoutingTable.from_configmap_data(kube.objects[RESOURCE_CM, "default", "finserve-routing"]["data"])
    assert (str(table.routes["finserve-good"].stable), table.routes["finserve-good"].canary) == (
        f"banking77@{HEALTHY}",
        None,
    )
    bad_route = table.routes["finserve-bad"]
    assert (str(bad_route.stable), bad_route.canary, bad_route.canary_weight) == (
        f"banking77@{STABLE}",
        None,
        0,
    )

    # The operator's own gauges say the same (what the chart's FinserveRolloutFailed alert reads).
    assert (gauges["bad", "Failed"], gauges["bad", "Progressing"], gauges["bad", "weight"]) == (1, 0, 0)
    assert (gauges["good", "Succeeded"], gauges["good", "weight"]) == (1, 0)
