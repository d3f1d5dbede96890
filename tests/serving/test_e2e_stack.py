"""End to end: `finserve up` as a user runs it (Ray Serve graph, real Presidio, MiniLM + Milvus
Lite, a real Redis L2, the real SmolLM2 weights), called over HTTP and over gRPC through each ingress
(Ray Serve's Python proxy, and HAProxy forwarding to the Gateway replica's own servers), then stopped
with SIGTERM or SIGINT: no Ray or haproxy process may outlive it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx
import psutil
import pytest
import redis
import yaml
from netutil import free_port
from otlp_receiver import OTLPReceiver

from finserve.serving.audit import read_records
from finserve.serving.haproxy_procs import (
    haproxy_processes,
    remove_node_dir,
    running,
    started_with,
    stop_haproxy,
)

pytestmark = pytest.mark.slow

CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"
EMAIL = "max.mustermann@example.org"
SECRETS = (CARD, IBAN, EMAIL, "4111111111111111", "DE89370400440532013000", "max.mustermann")
CARD_REQUEST_ID = "4458-5630-7407-7526"  # a Luhn-valid card written as a request id
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
GRPC_TRACE_ID = "1bf7651916cd43dd8448eb211c80319d"


def _ray_processes(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


def _haproxy_descendants(pid: int) -> list[psutil.Process]:
    """haproxy processes below `finserve up` (Ray's HAProxyManager actor starts them as its children;
    each reload starts a new one and retires the old, so any of them may be gone a moment later)."""
    found = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            if proc.name() == "haproxy":
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


def _cmdlines(procs: list[psutil.Process]) -> list[list[str]]:
    out = []
    for proc in procs:
        try:
            out.append(proc.cmdline())
        except psutil.NoSuchProcess:
            continue
    return out


def _haproxy_holding(pid: int, ports: set[int], timeout: float = 60) -> list[psutil.Process]:
    """The haproxy processes below `pid` once one of them listens on all of `ports`."""
    deadline = time.monotonic() + timeout
    while True:
        procs = _haproxy_descendants(pid)
        for proc in procs:
            try:
                conns = proc.net_connections(kind="tcp")
                listening = {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN}
            except psutil.NoSuchProcess:
                continue
            if ports <= listening:
                return procs
        if time.monotonic() > deadline:
            raise AssertionError(f"no haproxy below {pid} listens on {sorted(ports)}")
        time.sleep(0.5)


@pytest.fixture
def otlp():
    receiver = OTLPReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(params=["proxy", "haproxy"])
def running_stack(request: pytest.FixtureRequest, tmp_path: Path, small_index: Path, redis_server, otlp):
    """`finserve up` in a subprocess with the ingress named by the parameter, ready to answer, exporting
    its traces to a local OTLP receiver (`otlp`)."""
    from stack_config import stack_config

    index = tmp_path / "milvus.db"
    (shutil.copytree if small_index.is_dir() else shutil.copy)(small_index, index)
    port = free_port()
    cfg = stack_config(tmp_path, index, redis_server.url, http_port=port, grpc_port=free_port())
    cfg.deployments = cfg.deployments.model_copy(update={"ingress": request.param})
    cfg.exposure = cfg.exposure.model_copy(update={"metrics_port": free_port()})  # its own listener, loopback
    cfg_path = tmp_path / "serving.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    # Ray's socket paths must stay short: its temp dir goes directly under /tmp.
    ray_tmp = tempfile.mkdtemp(prefix="fsray-", dir="/tmp")
    env = {
        **os.environ,
        "RAY_TMPDIR": ray_tmp,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "finserve.cli", "up", "--config", str(cfg_path), "--no-ingest"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
    # Which haproxy config this stack's processes read: a failed test must not leave one holding ports.
    configs = {cmd[cmd.index("-f") + 1] for cmd in _cmdlines(_haproxy_descendants(proc.pid)) if "-f" in cmd}
    try:
        yield base, cfg, proc, ray_tmp
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
        for config in configs:
            stop_haproxy(config, grace_s=0)
            remove_node_dir(config, Path(config).parent.name)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_stack_answers_guarded_audits_and_stops_cleanly(running_stack, redis_server, otlp):
    base, cfg, proc, ray_tmp = running_stack
    if cfg.deployments.ingress == "haproxy":
        # HAProxy itself holds both client ports, so every call below goes through it.
        haproxy = _haproxy_holding(proc.pid, {cfg.gateway.http_port, cfg.gateway.grpc_port})
    else:
        haproxy = _haproxy_descendants(proc.pid)
        assert haproxy == []
    body = {
        "model": "finserve-banking",
        "max_tokens": 24,
        "messages": [
            {"role": "user", "content": f"Charge on card {CARD}, refund to {IBAN}, write to {EMAIL}"}
        ],
    }
    resp = httpx.post(
        f"{base}/v1/chat/completions", json=body, timeout=120, headers={"traceparent": TRACEPARENT}
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-trace-id"] == TRACE_ID
    # One trace across Ray deployments: the gateway's stages and the Retriever's and Generator's replicas.
    expected = {
        "finserve.retrieval",
        "finserve.retriever.search",
        "finserve.generate",
        "finserve.generator.generate",
        "finserve.audit",
    }
    # Waits for the names too: the gateway's last spans may come in a later export batch than its first.
    spans = otlp.wait_for(
        TRACE_ID, {"finserve-gateway", "finserve-retriever", "finserve-generator"}, names=expected
    )
    names = {s.name for s in spans}
    assert expected <= names, names
    info = resp.json()["finserve"]
    assert info["pii"]["input"] == {"CREDIT_CARD": 1, "IBAN_CODE": 1, "EMAIL_ADDRESS": 1}
    assert info["intent"] and info["citations"] and info["adapter"] == "base@0.0.0"

    # A request id holding a card number: Ray Serve reads x-request-id before finserve (its access log, its
    # own X-Request-ID header), so serving/ray_ingress.py pseudonymises it first; no header echoes it raw.
    bad = httpx.post(
        f"{base}/v1/chat/completions", content=b"{oops", timeout=30, headers={"x-request-id": CARD_REQUEST_ID}
    )
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]["message"]
    assert {v for v in bad.headers.get_list("x-request-id")} == {bad.json()["error"]["request_id"]}
    assert bad.json()["error"]["request_id"].startswith("u_")

    with httpx.stream(
        "POST", f"{base}/v1/chat/completions", timeout=120, json={**body, "stream": True}
    ) as stream:
        events = [line for line in stream.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    streamed = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events[:-1])

    answered = _check_grpc(cfg.gateway.grpc_port, f"My card {CARD} was charged twice, email {EMAIL}")

    metrics = httpx.get(f"{base}/metrics", timeout=30).text
    assert "finserve_requests_total" in metrics
    own = httpx.get(f"http://127.0.0.1:{cfg.exposure.metrics_port}/metrics", timeout=30).text
    assert "finserve_requests_total" in own
    _check_exposure(proc.pid, cfg, haproxy)

    audit = cfg.audit.path.read_text()
    lines = list(read_records(cfg.audit.path))  # request lines only: checkpoints are lines of their own
    assert [x["status"] for x in lines] == [200, 400, 200, 200, 404]
    assert lines[3]["request_id"] == "e2e-grpc" and lines[3]["pii"]["input"] == {
        "CREDIT_CARD": 1,
        "EMAIL_ADDRESS": 1,
    }
    assert (lines[0]["trace_id"], lines[3]["trace_id"]) == (
        TRACE_ID,
        GRPC_TRACE_ID,
    )  # HTTP header, gRPC metadata
    cached = redis.Redis.from_url(redis_server.url)
    everything = (
        resp.text
        + streamed
        + answered
        + audit
        + metrics
        + " ".join((k + (cached.get(k) or b"")).decode(errors="replace") for k in cached.keys("*"))
    )
    for secret in SECRETS:
        assert secret not in everything

    _check_openai_sdk(base, cfg)

    verify = subprocess.run(
        [sys.executable, "-m", "finserve.cli", "audit", "verify", "--path", str(cfg.audit.path)],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    out = _stop(proc, signal.SIGTERM, ray_tmp, haproxy)
    assert f"port {cfg.gateway.grpc_port}" in out  # `finserve up` says where gRPC listens
    ray_logs = " ".join(p.read_text(errors="replace") for p in Path(ray_tmp).rglob("*.log") if p.is_file())
    assert "request_id" in ray_logs or "POST" in ray_logs  # Ray did log the requests
    assert CARD_REQUEST_ID not in ray_logs and CARD_REQUEST_ID not in out


@pytest.mark.parametrize("running_stack", ["haproxy"], indirect=True)
def test_ctrl_c_right_after_start_leaves_no_haproxy(running_stack):
    """SIGINT (what Ctrl-C sends) as soon as the stack answers, while HAProxy may still be reloading."""
    _, cfg, proc, ray_tmp = running_stack
    haproxy = _haproxy_holding(proc.pid, {cfg.gateway.http_port})
    _stop(proc, signal.SIGINT, ray_tmp, haproxy)


@pytest.mark.parametrize("running_stack", ["haproxy"], indirect=True)
def test_haproxy_orphaned_outside_ray_is_stopped_with_the_stack(running_stack):
    """The leak Ray's own clean-up cannot catch: haproxy is the child of Ray's HAProxyManager actor, the
    raylet (a subreaper) reaps orphans only while it lives, and the actor stops haproxy only while it
    runs. With both gone abruptly (killed here: raylet first, then the actor's process) haproxy is left
    to init and keeps the ports. `finserve up` must still stop it, found by the config file Ray gave it."""
    _, cfg, proc, ray_tmp = running_stack
    config, manager = _listener_config_and_parent(proc.pid, cfg.gateway.http_port)
    (raylet,) = [p for p in psutil.Process(proc.pid).children() if p.name() == "raylet"]
    raylet.kill()
    psutil.wait_procs([raylet], timeout=30)
    manager.kill()
    psutil.wait_procs([manager], timeout=30)
    # Found by config, not by the pids seen before: a reload may have replaced the listener meanwhile.
    orphans = [p for p in haproxy_processes(config) if running(p)]
    assert orphans and not set(orphans) & set(_haproxy_descendants(proc.pid))  # no longer below `finserve up`
    out = _stop(proc, signal.SIGTERM, ray_tmp, orphans)
    assert f"stopped {len(orphans)} haproxy process(es) Ray left running" in out, out


def _listener_config_and_parent(pid: int, port: int, timeout: float = 60) -> tuple[str, psutil.Process]:
    """The config file and parent (Ray's HAProxyManager actor) of the haproxy below `pid` listening on
    `port`; retried, because a reload retires the old haproxy between any two looks at it."""
    deadline = time.monotonic() + timeout
    while True:
        for candidate in _haproxy_holding(pid, {port}, timeout=timeout):
            try:
                listening = {
                    c.laddr.port
                    for c in candidate.net_connections(kind="tcp")
                    if c.status == psutil.CONN_LISTEN
                }
                cmdline, parent = candidate.cmdline(), candidate.parent()
            except psutil.NoSuchProcess:
                continue
            if port in listening and "-f" in cmdline and parent is not None:
                return cmdline[cmdline.index("-f") + 1], parent
        if time.monotonic() > deadline:
            raise AssertionError(f"no live haproxy below {pid} kept listening on {port}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen, signum: int, ray_tmp: str, haproxy: list[psutil.Process]) -> str:
    """Stops `finserve up` the way a user does and asserts that no Ray or haproxy process it started
    survives; returns its output."""
    cmdlines = _cmdlines(haproxy)
    proc.send_signal(signum)
    assert proc.wait(timeout=120) == 0
    out = proc.stdout.read()
    time.sleep(2)
    assert _ray_processes(ray_tmp) == []
    assert [p.pid for p in haproxy if running(p)] == []
    if not haproxy:
        assert "HAProxy ingress" not in out
        return out
    assert cmdlines
    config = out.split("HAProxy ingress (config ", 1)[1].split(")", 1)[0]
    # `finserve up` names the config Ray gave its haproxy: the runner's clean-up looks for exactly these.
    assert all(started_with(cmd, config) for cmd in cmdlines), (config, cmdlines)
    # Nothing else started with it either (a reload's replacement), and Ray's per-node folder is gone.
    assert haproxy_processes(config) == []
    assert not Path(config).parent.exists()
    return out


def _listeners(pid: int) -> dict[int, set[str]]:
    """Listening TCP port -> addresses, over `finserve up` and every process below it."""
    out: dict[int, set[str]] = {}
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for proc in procs:
        try:
            conns = proc.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN:
                out.setdefault(c.laddr.port, set()).add(c.laddr.ip)
    return out


def _check_exposure(pid: int, cfg, haproxy: list[psutil.Process]) -> None:
    """What finserve opens stays on loopback (the gateway's host here): the ingress ports, the own /metrics
    listener and, with HAProxy, every haproxy listener (stats page, Prometheus exporter) and the Gateway
    replica's own servers it forwards to; HAProxy's admin socket is private. Ray core (GCS, raylet, object
    manager, workers, agents) is a single loopback node: no process below `finserve up` listens anywhere else."""
    loopback = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}  # gRPC binds 127.0.0.1 on a v4-mapped IPv6 socket
    listening = _listeners(pid)
    for port in (cfg.gateway.http_port, cfg.gateway.grpc_port, cfg.exposure.metrics_port):
        assert listening.get(port) and listening[port] <= loopback, (port, listening.get(port))
    exposed = {port: addresses for port, addresses in listening.items() if not addresses <= loopback}
    assert exposed == {}, exposed
    if not haproxy:
        return
    config_path = next(cmd[cmd.index("-f") + 1] for cmd in _cmdlines(haproxy) if "-f" in cmd)
    config = Path(config_path).read_text()
    backends = {int(m) for m in re.findall(r"^\s*server \S+ [^\s:]+:(\d+)", config, re.M)}
    assert backends, config
    for proc in _haproxy_descendants(pid):
        try:
            addresses = {
                c.laddr.ip for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN
            }
        except psutil.NoSuchProcess:
            continue
        assert addresses <= loopback, addresses
    for port in backends:
        assert port in listening and listening[port] <= loopback, (port, listening.get(port))
    socket_path = re.search(r"stats socket (\S+) mode 600 level admin", config).group(1)
    assert os.stat(socket_path).st_mode & 0o777 == 0o600
    private = Path(config_path).parent.parent  # <private folder>/<node id>/haproxy.cfg
    assert private.name.startswith("fs-haproxy-") and private.stat().st_mode & 0o777 == 0o700


def _check_openai_sdk(base: str, cfg) -> None:
    """The official openai SDK through the Ray ingress: a stream with its usage chunk, and embeddings of
    masked text (the Retriever deployment embeds them)."""
    import openai

    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)
    *answer, last = list(
        client.chat.completions.create(
            model="finserve-banking",
            messages=[{"role": "user", "content": [{"type": "text", "text": "Activate my card"}]}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert last.choices == [] and 0 < last.usage.completion_tokens <= 8
    assert "".join(c.choices[0].delta.content or "" for c in answer).strip()
    out = client.embeddings.create(
        model="all-MiniLM-L6-v2", input=[f"card {CARD}", "card 5500 0000 0000 0004"]
    )
    import numpy as np

    assert len(out.data[0].embedding) == 384
    assert np.allclose(out.data[0].embedding, out.data[1].embedding, atol=1e-5)  # both cards masked alike
    statuses = [x["status"] for x in read_records(cfg.audit.path)]
    assert statuses[-2:] == [200, 200]


def _check_grpc(port: int, question: str) -> str:
    """OIP v2 through the gRPC ingress (Ray's proxy or HAProxy): health, one guarded answer, one NOT_FOUND."""
    from finserve.serving.oip_grpc import grpc_predict_v2_pb2 as pb
    from finserve.serving.oip_grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    text = pb.ModelInferRequest.InferInputTensor(
        name="text",
        datatype="BYTES",
        shape=[1],
        contents=pb.InferTensorContents(bytes_contents=[question.encode()]),
    )
    request = pb.ModelInferRequest(
        model_name="finserve-banking",
        inputs=[text],
        parameters={"max_tokens": pb.InferParameter(int64_param=16)},
    )
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        # grpc.health.v1 through the same ingress, as Kubernetes' grpc probe asks it (no metadata).
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=30
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready
        resp, call = stub.ModelInfer.with_call(
            request,
            timeout=120,
            metadata=[
                ("x-request-id", "e2e-grpc"),
                ("traceparent", f"00-{GRPC_TRACE_ID}-b7ad6b7169203331-01"),
            ],
        )
        request.model_name = "nope"
        try:
            stub.ModelInfer(request, timeout=60)
            raise AssertionError("an unknown model must fail")
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND and "not served" in err.details()
            assert "Traceback" not in err.details()
    out = {t.name: t.contents.bytes_contents[0].decode() for t in resp.outputs}
    assert out["text"].strip() and out["intent"] and out["citations"]
    assert (out["adapter"], out["request_id"]) == ("base@0.0.0", "e2e-grpc")
    assert ("x-request-id", "e2e-grpc") in call.trailing_metadata()
    return str(resp) + " ".join(out.values())


# ---- graceful shutdown: SIGTERM drains (serving/drain/) ----

LONG_QUESTION = "Explain step by step everything I should do when my card has not arrived yet."


def _chat(base: str, rid: str, out: dict, stream: bool, started=None) -> None:
    """One chat request that takes a few seconds (up to 96 tokens on the CPU engine); its outcome goes to ``out``."""
    body = {
        "model": "finserve-banking",
        "max_tokens": 96,
        "messages": [{"role": "user", "content": LONG_QUESTION}],
        "stream": stream,
    }
    headers = {"x-request-id": rid}
    try:
        if not stream:
            resp = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=180)
            data = resp.json()
            out[rid] = (
                resp.status_code,
                data["choices"][0]["finish_reason"],
                data["choices"][0]["message"]["content"],
            )
            return
        with httpx.stream(
            "POST", f"{base}/v1/chat/completions", json=body, headers=headers, timeout=180
        ) as resp:
            events = []
            for line in resp.iter_lines():
                if not line.startswith("data: "):
                    continue
                events.append(line[6:])
                if started is not None and len(events) == 1:  # the answer has begun, not ended
                    started.set()
        text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
        out[rid] = (resp.status_code, events[-1], text, time.monotonic())
    except Exception as exc:  # noqa: BLE001 - a cut request is the failure this test looks for
        out[rid] = ("failed", repr(exc))
    finally:
        if started is not None:
            started.set()


def _probe_until_closed(base: str, hang_guard_s: float = 240) -> list[tuple[float, object]]:
    """/readyz answers, from now until the listener refuses connections (or the hang guard ends it)."""
    seen: list[tuple[float, object]] = []
    deadline = time.monotonic() + hang_guard_s
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(f"{base}/readyz", timeout=10)
            is_json = resp.headers.get("content-type", "").startswith("application/json")
            seen.append((time.monotonic(), (resp.status_code, resp.json() if is_json else resp.text)))
        except httpx.HTTPError as exc:
            seen.append((time.monotonic(), type(exc).__name__))
            return seen
        time.sleep(0.1)
    return seen


@pytest.mark.parametrize("running_stack", ["haproxy"], indirect=True)
def test_sigterm_drains_requests_in_flight_then_leaves_nothing(running_stack):
    """SIGTERM with three requests in flight (one streamed): /readyz says 503 draining before the HTTP listener
    closes, each request is answered whole and audited, `finserve up` exits 0 and nothing it started is left."""
    import threading

    base, cfg, proc, ray_tmp = running_stack
    _haproxy_holding(proc.pid, {cfg.gateway.http_port})
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    assert {"raylet", "gcs_server", "haproxy"} <= {p.name() for p in tree}
    out: dict = {}
    streaming = threading.Event()
    clients = [threading.Thread(target=_chat, args=(base, f"drain-{i}", out, False)) for i in range(2)]
    clients.append(threading.Thread(target=_chat, args=(base, "drain-stream", out, True, streaming)))
    for t in clients:
        t.start()
    assert streaming.wait(180)  # the stream has begun: its answer is still to come
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    probes = _probe_until_closed(base)
    for t in clients:
        t.join(240)
    assert proc.wait(timeout=120) == 0
    log = proc.stdout.read()

    statuses = [s for _, s in probes]
    assert isinstance(statuses[-1], str), statuses  # ended by a connection error: the listener went
    draining = (503, {"ready": False, "draining": True, "stages": {"accepting": False}})
    assert draining in statuses, statuses  # not ready, said by the replica, before the listener closed
    after = statuses[statuses.index(draining) :]
    assert not [s for s in after if s[0] == 200], statuses  # once not ready, never ready again
    assert "draining:" in log and "drain over" in log, log

    for rid in ("drain-0", "drain-1"):
        status, finish, text = out[rid]
        assert status == 200 and finish in ("stop", "length") and text.strip(), out[rid]
    status, last, text, done = out["drain-stream"]
    assert (status, last) == (200, "[DONE]") and text.strip() and done > signalled, out["drain-stream"]
    lines = {r["request_id"]: r for r in read_records(cfg.audit.path)}
    assert all(lines[rid]["status"] == 200 for rid in ("drain-0", "drain-1", "drain-stream")), lines
    verify = subprocess.run(
        [sys.executable, "-m", "finserve.cli", "audit", "verify", "--path", str(cfg.audit.path)],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    time.sleep(2)
    left = [p for p in tree if running(p)]
    assert left == [], [(p.pid, p.name()) for p in left]
    assert _ray_processes(ray_tmp) == []


# ---- the RayService preStop hook: `finserve drain` from a process of its own (serving/drain/join.py) ----

IN_FLIGHT_LINE = re.compile(r"draining: (?:not ready, )?([1-9]\d*) in flight")


def _stream_chain(base: str, stop, began, out: list) -> None:
    """Streamed chat requests one after another until ``stop``: one is in flight at any moment (the gap between
    two is a client loop's turn), whenever the drain process gets to join. Each outcome goes to ``out``."""
    body = {
        "model": "finserve-banking",
        "max_tokens": 96,
        "messages": [{"role": "user", "content": LONG_QUESTION}],
        "stream": True,
    }
    i = 0
    while not stop.is_set():
        rid, sent, first = f"prestop-{i}", time.monotonic(), None
        i += 1
        try:
            with httpx.stream(
                "POST", f"{base}/v1/chat/completions", json=body, headers={"x-request-id": rid}, timeout=180
            ) as resp:
                events = []
                for line in resp.iter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
                        if first is None:
                            first = time.monotonic()
                            began.set()
            chunks = [json.loads(e) for e in events[:-1]]
            text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
            finish = [
                c["choices"][0].get("finish_reason") for c in chunks if c["choices"][0].get("finish_reason")
            ]
            out.append((rid, sent, first, time.monotonic(), resp.status_code, events[-1], finish, text))
        except Exception as exc:  # noqa: BLE001 - a cut request is the failure this test looks for
            out.append((rid, sent, first, time.monotonic(), "failed", repr(exc), [], ""))
            return


@pytest.mark.parametrize("running_stack", ["proxy"], indirect=True)
def test_prestop_finserve_drain_waits_for_the_request_in_flight(running_stack, tmp_path):
    """The chart's preStop command, `finserve drain`, run as a process of its own beside `finserve up` (custom
    data dir config and RAY_TMPDIR, Ray's token authentication on): /readyz turns 503 `draining: true` while a
    streamed request is in flight, that request is answered whole and audited, and the command exits 0 only after
    it finished. Before the fix the driver was refused (InvalidAuthToken) or joined whichever cluster Ray's
    `auto` lookup found on the host."""
    import threading

    base, cfg, proc, ray_tmp = running_stack
    stop, began, out = threading.Event(), threading.Event(), []
    chain = threading.Thread(target=_stream_chain, args=(base, stop, began, out))
    chain.start()
    try:
        assert began.wait(180)
        # As the pod runs it: `finserve drain`, its config from FINSERVE_CONFIG. No not-ready period here, so
        # the command's exit waits on the in-flight count alone.
        env = {
            **os.environ,
            "RAY_TMPDIR": ray_tmp,
            "FINSERVE_CONFIG": str(tmp_path / "serving.yaml"),
            "FINSERVE_DRAIN__MIN_NOT_READY_S": "0",
        }
        finserve = Path(sys.executable).parent / "finserve"
        log = (tmp_path / "drain.log").open("w")
        started = time.monotonic()
        drain = subprocess.Popen([str(finserve), "drain"], env=env, stdout=log, stderr=subprocess.STDOUT)
        exited: list[float] = []  # when the command returned, seen from a thread of its own
        watch = threading.Thread(target=lambda: (drain.wait(), exited.append(time.monotonic())))
        watch.start()
        not_ready = None
        while drain.poll() is None and time.monotonic() - started < 120:
            resp = httpx.get(f"{base}/readyz", timeout=10)
            if resp.status_code == 503 and resp.json().get("draining") is True:
                not_ready = time.monotonic()
                break
            time.sleep(0.1)
    finally:
        stop.set()  # the request in flight now is the chain's last
    chain.join(240)
    watch.join(60)  # the command bounds itself (join timeout + drain.grace_s); this only guards a hang
    if drain.poll() is None:
        drain.kill()
    stderr = (tmp_path / "drain.log").read_text()

    assert exited and drain.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert not_ready is not None, stderr  # readiness went false while the command ran
    assert "drain over" in stderr and "(idle)" in stderr, stderr
    assert IN_FLIGHT_LINE.search(stderr), stderr  # it saw our request in flight and waited for it
    during = [r for r in out if r[1] < not_ready < r[3]]  # in flight while /readyz said 503 draining
    assert len(during) == 1, out
    rid, _, first, done, status, last, finish, text = during[0]
    assert (status, last) == (200, "[DONE]") and finish and finish[-1] in ("stop", "length"), during
    assert first is not None and text.strip(), during
    assert done < exited[0], (done, exited)  # the command returned only after the request's last byte
    assert not [r for r in out if r[4] != 200], out
    lines = {r["request_id"]: r for r in read_records(cfg.audit.path)}
    assert lines[rid]["status"] == 200, lines.get(rid)
    # Draining stays on after the command (the pod is going): never ready again.
    ready = httpx.get(f"{base}/readyz", timeout=30)
    assert (ready.status_code, ready.json()["draining"]) == (503, True)
    print(
        f"\nprestop drain: /readyz 503 after {not_ready - started:.2f} s, request {rid} done after "
        f"{done - started:.2f} s, command exit after {exited[0] - started:.2f} s\n{stderr}"
    )
