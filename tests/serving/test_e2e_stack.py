"""End to end: `finserve up` as a user runs it (Ray Serve graph, real Presidio, MiniLM + Milvus
Lite, a real Redis L2, the real SmolLM2 weights), called over HTTP and over gRPC (Ray Serve's gRPC
proxy), then stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx
import pytest
import redis
import yaml
from netutil import free_port

pytestmark = pytest.mark.slow

CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"
EMAIL = "max.mustermann@example.org"
SECRETS = (CARD, IBAN, EMAIL, "4111111111111111", "DE89370400440532013000", "max.mustermann")


def _ray_processes(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


@pytest.fixture
def running_stack(tmp_path: Path, small_index: Path, redis_server):
    from stack_config import stack_config

    index = tmp_path / "milvus.db"
    (shutil.copytree if small_index.is_dir() else shutil.copy)(small_index, index)
    port = free_port()
    cfg = stack_config(tmp_path, index, redis_server.url, http_port=port, grpc_port=free_port())
    cfg_path = tmp_path / "serving.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    # Ray's socket paths must stay short: its temp dir goes directly under /tmp.
    ray_tmp = tempfile.mkdtemp(prefix="fsray-", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    proc = subprocess.Popen([sys.executable, "-m", "finserve.cli", "up", "--config", str(cfg_path), "--no-ingest"],
                            env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"finserve up exited early ({proc.returncode}):\n{proc.stdout.read()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    else:
        proc.send_signal(signal.SIGTERM)
        pytest.fail("stack not ready in time")
    yield base, cfg, proc, ray_tmp
    if proc.poll() is None:
        proc.kill()
    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_stack_answers_guarded_audits_and_stops_cleanly(running_stack, redis_server):
    base, cfg, proc, ray_tmp = running_stack
    body = {"model": "finserve-banking", "max_tokens": 24, "messages": [
        {"role": "user", "content": f"Charge on card {CARD}, refund to {IBAN}, write to {EMAIL}"}]}
    resp = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    info = resp.json()["finserve"]
    assert info["pii"]["input"] == {"CREDIT_CARD": 1, "IBAN_CODE": 1, "EMAIL_ADDRESS": 1}
    assert info["intent"] and info["citations"] and info["adapter"] == "base@0.0.0"

    bad = httpx.post(f"{base}/v1/chat/completions", content=b"{oops", timeout=30)
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]["message"]

    with httpx.stream("POST", f"{base}/v1/chat/completions", timeout=120,
                      json={**body, "stream": True}) as stream:
        events = [line for line in stream.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    streamed = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events[:-1])

    answered = _check_grpc(cfg.gateway.grpc_port, f"My card {CARD} was charged twice, email {EMAIL}")

    metrics = httpx.get(f"{base}/metrics", timeout=30).text
    assert "finserve_requests_total" in metrics

    audit = cfg.audit.path.read_text()
    lines = [json.loads(x) for x in audit.splitlines()]
    assert [x["status"] for x in lines] == [200, 400, 200, 200, 404]
    assert lines[3]["request_id"] == "e2e-grpc" and lines[3]["pii"]["input"] == {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1}
    cached = redis.Redis.from_url(redis_server.url)
    everything = resp.text + streamed + answered + audit + metrics + " ".join(
        (k + (cached.get(k) or b"")).decode(errors="replace") for k in cached.keys("*"))
    for secret in SECRETS:
        assert secret not in everything

    verify = subprocess.run([sys.executable, "-m", "finserve.cli", "audit", "verify", "--path", str(cfg.audit.path)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    assert f"port {cfg.gateway.grpc_port}" in proc.stdout.read()  # `finserve up` says where gRPC listens
    time.sleep(2)
    assert _ray_processes(ray_tmp) == []


def _check_grpc(port: int, question: str) -> str:
    """OIP v2 through Ray Serve's gRPC proxy: health, one guarded answer, one NOT_FOUND."""
    from finserve.serving.oip_grpc import grpc_predict_v2_pb2 as pb
    from finserve.serving.oip_grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    text = pb.ModelInferRequest.InferInputTensor(name="text", datatype="BYTES", shape=[1],
                                                 contents=pb.InferTensorContents(bytes_contents=[question.encode()]))
    request = pb.ModelInferRequest(model_name="finserve-banking", inputs=[text],
                                   parameters={"max_tokens": pb.InferParameter(int64_param=16)})
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready
        resp, call = stub.ModelInfer.with_call(request, metadata=[("x-request-id", "e2e-grpc")], timeout=120)
        request.model_name = "nope"
        try:
            stub.ModelInfer(request, timeout=60)
            raise AssertionError("an unknown model must fail")
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND and "nope" in err.details()
            assert "Traceback" not in err.details()
    out = {t.name: t.contents.bytes_contents[0].decode() for t in resp.outputs}
    assert out["text"].strip() and out["intent"] and out["citations"]
    assert (out["adapter"], out["request_id"]) == ("base@0.0.0", "e2e-grpc")
    assert ("x-request-id", "e2e-grpc") in call.trailing_metadata()
    return str(resp) + " ".join(out.values())
