"""What the serving app shows besides the API: docs off, /metrics on its own loopback listener (404 on the
API port unless configured), metrics labels bounded whatever clients send, error bodies without echoes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from netutil import free_port
from prometheus_client import CollectorRegistry, Counter
from scripted_stages import scripted_pipeline

from finserve.serving.config import DEFAULT_MODEL, ServingConfig
from finserve.serving.exposure import ExposureConfig, start_metrics_listener
from finserve.serving.gateway import create_api
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.stages import LocalGuard


@pytest.fixture(scope="module")
def guard() -> LocalGuard:
    return LocalGuard(PIIGuard(ServingConfig().guard))


def _client(tmp_path: Path, guard: LocalGuard, **exposure: object) -> TestClient:
    cfg = ServingConfig()
    cfg.exposure = ExposureConfig(metrics_port=None, **exposure)
    pipeline = scripted_pipeline(cfg, tmp_path, guard)

    async def readiness() -> dict[str, bool]:
        return {"audit": True}

    client = TestClient(create_api(pipeline, readiness))
    client.pipeline = pipeline  # type: ignore[attr-defined]
    return client


@pytest.fixture
def default_client(tmp_path: Path, guard: LocalGuard) -> Iterator[TestClient]:
    with _client(tmp_path, guard) as client:
        yield client


def test_docs_openapi_and_api_port_metrics_are_off_by_default(default_client: TestClient) -> None:
    for path in ("/docs", "/openapi.json", "/redoc", "/metrics"):
        assert default_client.get(path).status_code == 404, path


def test_docs_and_api_port_metrics_when_configured(tmp_path: Path, guard: LocalGuard) -> None:
    with _client(tmp_path, guard, docs=True, metrics_on_api_port=True) as client:
        assert client.get("/openapi.json").status_code == 200 and client.get("/docs").status_code == 200
        assert (
            "finserve_requests_total" in client.get("/metrics").text
            or client.get("/metrics").status_code == 200
        )


def test_metrics_listener_serves_the_registry_on_loopback() -> None:
    registry = CollectorRegistry()
    Counter("finserve_probe", "A probe.", registry=registry).inc()
    listener = start_metrics_listener(ExposureConfig(metrics_port=0), registry)
    try:
        host, port = listener.server.server_address[:2]
        assert host == "127.0.0.1"
        assert "finserve_probe_total 1.0" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        listener.stop()
    assert listener.port is None


def test_a_taken_metrics_port_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen(1)
        listener = start_metrics_listener(
            ExposureConfig(metrics_port=taken.getsockname()[1]), CollectorRegistry()
        )
    assert listener.port is None and "metrics listener not started" in caplog.text


def test_made_up_models_and_adapters_do_not_grow_metrics(tmp_path: Path, guard: LocalGuard) -> None:
    """Every label value comes from what is served: 60 invented model names and adapter versions add no
    series, and a lone surrogate cannot break /metrics' encoding."""
    with _client(tmp_path, guard, metrics_on_api_port=True) as client:
        body = {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "Where is my card?"}]}
        assert client.post("/v1/chat/completions", json=body).status_code == 200
        before = client.get("/metrics").text
        for i in range(30):
            assert (
                client.post("/v1/chat/completions", json={**body, "model": f"made-up-{i}"}).status_code == 404
            )
            resp = client.post(
                "/v1/chat/completions", json=body, headers={"x-finserve-adapter": f"base@9.9.{i}"}
            )
            # 403: forcing a version the route does not serve (serving/access/policy.py); never echoed.
            assert resp.status_code == 403 and "9.9." not in resp.text
        bad = client.post(
            "/v1/chat/completions",
            content=b'{"model":"m\\ud800","messages":[]}',
            headers={"content-type": "application/json"},
        )
        assert bad.status_code == 400
        after = client.get("/metrics")
        assert after.status_code == 200
        series = {
            line.split(" ")[0]
            for line in after.text.splitlines()
            if line.startswith("finserve_requests_total")
        }
        assert not any("made-up" in s or "9.9." in s for s in series)
        assert len(series) <= 4, series  # the served one, plus `unknown` per status code
        assert len(after.text) < 2 * len(before) + 20_000


def test_error_bodies_carry_no_echo_and_no_path(default_client: TestClient) -> None:
    secret = "/srv/registry/adapters/4111111111111111"
    bodies = [
        {"model": secret, "messages": [{"role": "user", "content": "hi"}]},
        {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": secret},
        {"model": DEFAULT_MODEL, "messages": [{"role": "robot", "content": secret}]},
    ]
    for body in bodies:
        resp = default_client.post("/v1/chat/completions", json=body)
        assert 400 <= resp.status_code < 500, resp.text
        assert secret not in resp.text and "input_value" not in resp.text and "/srv" not in resp.text
    # The registry's own message names its folder; the client gets the fixed one (the log keeps the detail).
    from finserve.contracts import AdapterNotFound
    from finserve.serving.errors import map_error

    m = map_error(AdapterNotFound(f"{secret}/nope@1.0.0: no manifest"))
    assert m.status == 404 and "/srv" not in m.message and "nope" not in m.message


def test_grpc_raw_contents_errors_do_not_echo_the_tensor_name() -> None:
    import struct

    from finserve.serving.errors import InvalidRequest
    from finserve.serving.oip_grpc import grpc_predict_v2_pb2 as pb
    from finserve.serving.oip_grpc.codec import to_infer_request

    name = "card 4111111111111111"
    request = pb.ModelInferRequest(
        model_name=DEFAULT_MODEL,
        raw_input_contents=[struct.pack("<I", 50) + b"short"],
        inputs=[pb.ModelInferRequest.InferInputTensor(name=name, datatype="BYTES", shape=[1])],
    )
    with pytest.raises(InvalidRequest) as refused:
        to_infer_request(request)
    assert refused.value.param == "raw_input_contents" and "4111" not in refused.value.message
