"""Every client field over HTTP (OpenAI /v1, OIP /v2 REST) and gRPC, on the whole in-process stack
(Presidio, MiniLM + Milvus Lite, a real Redis, the real SmolLM2 weights): a card number sent in the
model, tenant, request id, user, session or adapter field is refused with a 400 naming the field, or
pseudonymised, and never reaches the audit log, /metrics, a response header or an error body."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import grpc
import pytest

from finserve.serving.oip_grpc import grpc_predict_v2_pb2 as pb
from finserve.serving.oip_grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

pytestmark = pytest.mark.slow

MODEL = "finserve-banking"
CARD = "4458563074077526"
DOTTED = "4458.5630.7407.7526"
DASHED = "4458-5630-7407-7526"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, small_index, redis_server):
    from fastapi.testclient import TestClient
    from stack_config import stack_config

    from finserve.serving.local import create_local_app

    cfg = stack_config(tmp_path_factory.mktemp("fields"), small_index, redis_server.url, max_tokens_default=4)
    cfg.audit = cfg.audit.model_copy(update={"fsync": "never"})  # thousands of rejections below
    # Thousands of requests from one client within a minute: past the default rate limits, which have their
    # own tests (tests/serving/admission/); here every request must reach the checks under test.
    cfg.admission.rate = cfg.admission.rate.model_copy(update={"enabled": False})
    app = create_local_app(cfg, grpc_port=0)
    with TestClient(app) as client, grpc.insecure_channel(f"127.0.0.1:{app.state.grpc_port}") as channel:
        yield SimpleNamespace(client=client, stub=GRPCInferenceServiceStub(channel), config=cfg)


def strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def assert_no_card(text: str) -> None:
    """Neither the number nor its digits with any separators removed (every string field separately)."""
    assert CARD not in re.sub(r"\D", "", text)


def assert_nowhere(stack) -> None:
    for line in stack.config.audit.path.read_text().splitlines():
        for s in strings(json.loads(line)):
            assert_no_card(s)
    assert_no_card(stack.client.get("/metrics").text)


def chat(stack, headers=None, **body):
    payload = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "How do I activate my card?"}],
        **body,
    }
    return stack.client.post("/v1/chat/completions", json=payload, headers=headers or {})


@pytest.mark.parametrize(
    ("headers", "body", "status", "field"),
    [
        ({}, {"model": CARD}, 404, "model"),
        ({}, {"model": DASHED}, 404, "model"),
        ({"x-finserve-tenant": CARD}, {}, 400, "x-finserve-tenant"),
        ({"x-finserve-tenant": DOTTED}, {}, 400, "x-finserve-tenant"),
        ({"x-finserve-tenant": "4458\u200b5630\u200b7407\u200b7526".encode()}, {}, 400, "x-finserve-tenant"),
        ({"x-request-id": "\u0664\u0664\u0665\u0668-5630-7407-7526".encode()}, {}, 400, "x-request-id"),
        ({"x-finserve-adapter": f"c{CARD}@1.0.0"}, {}, 400, "x-finserve-adapter"),
        ({"x-finserve-session": "s" * 300}, {}, 400, "x-finserve-session"),
        ({}, {"user": "u" * 300}, 400, "user"),
    ],
    ids=[
        "model",
        "model-dashed",
        "tenant",
        "tenant-dotted",
        "tenant-zero-width",
        "request-id-arabic-indic",
        "adapter",
        "session-too-long",
        "user-too-long",
    ],
)
def test_http_fields_refused_naming_the_field(stack, headers, body, status, field):
    resp = chat(stack, headers, **body)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    if status == 400:
        assert err["param"] == field and err["message"].startswith(field)
    assert_no_card(resp.text)
    assert all(CARD not in re.sub(r"\D", "", v) for v in resp.headers.values())
    assert "input_value" not in resp.text and "/" not in err["message"].replace("GET /v1/models", "")
    assert_nowhere(stack)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"x-request-id": DASHED}, {}),
        ({"x-request-id": CARD}, {}),
        ({"x-finserve-session": f"card {DASHED}"}, {}),
        ({"x-user-id": CARD}, {}),
        ({}, {"user": f"{DASHED} jane@example.com"}),
    ],
    ids=["request-id-dashed", "request-id", "session", "x-user-id", "user"],
)
def test_http_fields_pseudonymised_and_answered(stack, headers, body):
    resp = chat(stack, headers, **body)
    assert resp.status_code == 200, resp.text
    rid = resp.headers["x-request-id"]
    assert resp.json()["finserve"]["request_id"] == rid
    if "x-request-id" in headers:
        assert rid.startswith("u_")
    for text in (resp.text, *resp.headers.values()):
        assert_no_card(text)
    assert "jane@example.com" not in stack.config.audit.path.read_text()
    assert_nowhere(stack)


def test_v2_rest_model_id_and_parameters(stack):
    tensor = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["Where is my card?"]}
    resp = stack.client.post(f"/v2/models/{CARD}/infer", json={"inputs": [tensor]})
    assert resp.status_code == 404 and resp.json()["param"] == "model"
    resp = stack.client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [tensor], "parameters": {CARD: 1}})
    assert resp.status_code == 400 and resp.json()["param"] == "parameters"
    resp = stack.client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [tensor], "id": "a b"})
    assert resp.status_code == 400 and resp.json()["param"] == "id"
    resp = stack.client.post(
        f"/v2/models/{MODEL}/infer",
        json={"id": DASHED, "inputs": [tensor], "parameters": {"user": CARD, "max_tokens": 4}},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"].startswith("u_")
    resp = stack.client.get(f"/v2/models/{CARD}")
    assert resp.status_code == 404
    for r in (resp,):
        assert_no_card(r.text)
    assert_nowhere(stack)


def infer_request(model: str = MODEL, **extra) -> pb.ModelInferRequest:
    text = pb.ModelInferRequest.InferInputTensor(
        name="text",
        datatype="BYTES",
        shape=[1],
        contents=pb.InferTensorContents(bytes_contents=[b"Where is my card?"]),
    )
    return pb.ModelInferRequest(model_name=model, inputs=[text], **extra)


@pytest.mark.parametrize(
    ("request_", "metadata", "code", "field"),
    [
        (infer_request(CARD), [], grpc.StatusCode.NOT_FOUND, "model"),
        (
            infer_request(),
            [("x-finserve-tenant", CARD)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "x-finserve-tenant",
        ),
        (
            infer_request(),
            [("x-finserve-adapter", f"c{CARD}@1.0.0")],
            grpc.StatusCode.INVALID_ARGUMENT,
            "x-finserve-adapter",
        ),
        (
            infer_request(model_version=f"c{DASHED}@1.0.0"),
            [],
            grpc.StatusCode.INVALID_ARGUMENT,
            "model_version",
        ),
        (infer_request(id="a b"), [], grpc.StatusCode.INVALID_ARGUMENT, "id"),
        (
            infer_request(parameters={CARD: pb.InferParameter(int64_param=1)}),
            [],
            grpc.StatusCode.INVALID_ARGUMENT,
            "parameters",
        ),
    ],
    ids=["model", "tenant", "adapter", "model-version", "id", "parameter-name"],
)
def test_grpc_fields_refused(stack, request_, metadata, code, field):
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.ModelInfer(request_, metadata=metadata, timeout=120)
    assert err.value.code() == code
    details = err.value.details()
    assert_no_card(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert details.startswith(field)
    for _, value in err.value.trailing_metadata() or ():
        if isinstance(value, str):
            assert_no_card(value)
    assert_nowhere(stack)


def test_grpc_ids_and_user_pseudonymised(stack):
    req = infer_request(
        id=CARD,
        parameters={
            "user": pb.InferParameter(string_param=CARD),
            "max_tokens": pb.InferParameter(int64_param=4),
        },
    )
    resp, call = stack.stub.ModelInfer.with_call(
        req, metadata=[("x-request-id", DASHED), ("x-finserve-session", CARD)], timeout=300
    )
    assert resp.id.startswith("u_")
    [(_, rid)] = [kv for kv in call.trailing_metadata() if kv[0] == "x-request-id"]
    assert rid.startswith("u_")
    assert_no_card(resp.SerializeToString().decode("utf-8", "replace"))
    assert_nowhere(stack)


def test_metrics_survive_surrogates_and_made_up_models(stack):
    body = '{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}'
    resp = stack.client.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    # Refused before routing: a lone surrogate can be neither stored nor sent back (400 naming the field).
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "model"
    assert stack.client.get("/metrics").status_code == 200
    before = stack.client.get("/metrics").text
    for i in range(3000):
        chat(stack, model=f"made-up-model-{i}")
    after = stack.client.get("/metrics")
    assert after.status_code == 200
    assert "made-up-model" not in after.text
    # The same series as before, only their counts moved: the size grows by digits, not by series.
    series = lambda text: {line.split(" ")[0] for line in text.splitlines() if not line.startswith("#")}  # noqa: E731
    assert series(after.text) - series(before) <= {s for s in series(after.text) if 'model="unknown"' in s}
    assert len(after.text) < len(before) + 4096
