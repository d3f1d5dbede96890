"""`finserve operator run` as a process: it serves rollouts from the emulated Kubernetes API (kmock
stands in for an API server that cannot run here), answers its liveness probe, serves its own
/metrics on the configured port, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import aiohttp
from mro_testkit import RESOURCE_MRO, create, fast, healthy, rollout_manifest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from finserve.cli import app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_needs_namespaces_or_all():
    result = CliRunner().invoke(app, ["operator", "run"])
    assert result.exit_code == 2
    assert "--namespace" in result.output


def test_run_refuses_a_bad_setting_before_it_starts(tmp_path, monkeypatch):
    path = tmp_path / "operator.yaml"
    path.write_text("poll_seconds: 5\nprometheus: {timeout: -1}\n")
    monkeypatch.setenv("FINSERVE_OPERATOR__PROMETHEUS__URL", "http://ops:hunter2@prom:9090")
    result = CliRunner().invoke(app, ["operator", "run", "--all-namespaces", "--config", str(path)])
    assert result.exit_code == 2
    assert "prometheus.timeout" in result.output and "hunter2" not in result.output


async def test_run_serves_rollouts_liveness_and_metrics(kube, kubeconfig, fake_prometheus):
    prom, prom_url = fake_prometheus
    healthy(prom)
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "FINSERVE_OPERATOR__PROMETHEUS__URL": prom_url,
        "FINSERVE_OPERATOR__POLL_SECONDS": "1",
        "FINSERVE_OPERATOR__METRICS_PORT": str(metrics_port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "finserve.cli",
        "operator",
        "run",
        "--all-namespaces",
        "--liveness",
        f"http://127.0.0.1:{port}/healthz",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await create(kube, RESOURCE_MRO, rollout_manifest(strategy=fast()))
        done = await kube.wait_for(
            RESOURCE_MRO,
            "default",
            "bank",
            lambda o: o is not None and (o.get("status") or {}).get("phase") == "Succeeded",
        )
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as probe:
                assert probe.status == 200
            async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as scrape:
                assert scrape.status == 200
                exported = await scrape.text()
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert done["status"]["stable"] == "banking77@1.1.0"
    samples = {
        (s.name, s.labels.get("phase")): (s.labels["rollout"], s.labels["model"], s.value)
        for family in text_string_to_metric_families(exported)
        for s in family.samples
    }
    assert samples[("finserve_rollout_phase", "Succeeded")] == ("bank", "finserve-banking", 1.0)
    assert samples[("finserve_rollout_phase", "Progressing")] == ("bank", "finserve-banking", 0.0)
    assert samples[("finserve_rollout_canary_weight", None)] == ("bank", "finserve-banking", 0.0)
    assert proc.returncode == 0, output.decode()[-3000:]
    assert b"Traceback" not in output
