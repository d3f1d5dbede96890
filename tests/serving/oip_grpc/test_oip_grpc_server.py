"""OIP v2 over real gRPC, answered by the whole in-process stack (Presidio, MiniLM + Milvus Lite,
a real Redis, the real SmolLM2 weights) through a grpc.aio server. test_e2e_stack.py calls the
same RPCs through Ray Serve's gRPC proxy."""

from __future__ import annotations

import json
from types import SimpleNamespace

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from finserve.serving.audit import read_records
from finserve.serving.oip import OUTPUTS
from finserve.serving.oip_grpc import grpc_predict_v2_pb2 as pb
from finserve.serving.oip_grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

pytestmark = pytest.mark.slow

MODEL = "finserve-banking"
CARD = "4111 1111 1111 1111"
SSN = "536-22-8145"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, small_index, redis_server):
    """REST and gRPC over one in-process pipeline (SSNs blocked by policy), for the whole module."""
    from fastapi.testclient import TestClient
    from stack_config import stack_config

    from finserve.serving.guard.config import GuardConfig
    from finserve.serving.local import create_local_app

    cfg = stack_config(tmp_path_factory.mktemp("grpc"), small_index, redis_server.url)
    cfg.guard = GuardConfig.model_validate({**cfg.guard.model_dump(), "policies": {"US_SSN": "block"}})
    app = create_local_app(cfg, grpc_port=0)
    with TestClient(app) as client, grpc.insecure_channel(f"127.0.0.1:{app.state.grpc_port}") as channel:
        yield SimpleNamespace(
            client=client, stub=GRPCInferenceServiceStub(channel), config=cfg, port=app.state.grpc_port
        )


def infer_request(*questions: str, model: str = MODEL, **params: int) -> pb.ModelInferRequest:
    text = pb.ModelInferRequest.InferInputTensor(
        name="text",
        datatype="BYTES",
        shape=[len(questions)],
        contents=pb.InferTensorContents(bytes_contents=[q.encode() for q in questions]),
    )
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[text],
        parameters={k: pb.InferParameter(int64_param=v) for k, v in params.items()},
    )


def outputs(resp: pb.ModelInferResponse) -> dict[str, list[str]]:
    return {t.name: [x.decode() for x in t.contents.bytes_contents] for t in resp.outputs}


def audit_line(stack, request_id: str) -> dict:
    [line] = [x for x in read_records(stack.config.audit.path) if x["request_id"] == request_id]
    return line


def rich_status(err: grpc.RpcError) -> status_pb2.Status:
    return status_pb2.Status.FromString(dict(err.trailing_metadata())["grpc-status-details-bin"])


def test_model_infer_answers_guarded_and_audited(stack):
    req = infer_request(f"My card {CARD} still has not arrived, what should I do?", max_tokens=16)
    resp, call = stack.stub.ModelInfer.with_call(req, metadata=[("x-request-id", "grpc-answer")], timeout=300)
    out = outputs(resp)
    assert list(out) == list(OUTPUTS)
    assert out["text"][0].strip() and out["intent"][0]
    assert out["adapter"] == ["base@0.0.0"] and out["request_id"] == ["grpc-answer"]
    assert out["citations"][0] and all(c.startswith("answer:") for c in out["citations"][0].split(","))
    assert (resp.model_name, resp.id) == (MODEL, "grpc-answer")
    assert ("x-request-id", "grpc-answer") in call.trailing_metadata()
    wire = resp.SerializeToString()
    assert CARD.encode() not in wire and CARD.replace(" ", "").encode() not in wire
    line = audit_line(stack, "grpc-answer")
    assert line["status"] == 200 and line["intent"] == out["intent"][0]
    assert line["pii"]["input"] == {"CREDIT_CARD": 1}
    assert "4111" not in line["input"] and "4111" not in (line["output"] or "")


def test_grpc_and_rest_give_the_same_answer(stack):
    question = "How do I activate my new card?"
    resp = stack.stub.ModelInfer(infer_request(question, max_tokens=12), timeout=300)
    rest = stack.client.post(
        f"/v2/models/{MODEL}/infer",
        json={
            "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [question]}],
            "parameters": {"max_tokens": 12},
        },
    )
    assert rest.status_code == 200, rest.text
    rest_out = {o["name"]: o["data"] for o in rest.json()["outputs"]}
    grpc_out = outputs(resp)
    for name in ("text", "intent", "adapter", "citations"):
        assert grpc_out[name] == rest_out[name], name


def test_two_questions_in_one_tensor_are_two_audited_requests(stack):
    resp = stack.stub.ModelInfer(
        infer_request("Where is my card?", "What is your exchange rate?", max_tokens=8),
        metadata=[("x-request-id", "grpc-pair")],
        timeout=300,
    )
    out = outputs(resp)
    assert out["request_id"] == ["grpc-pair-0", "grpc-pair-1"] and all(out["text"])
    assert [audit_line(stack, f"grpc-pair-{i}")["status"] for i in (0, 1)] == [200, 200]
    assert resp.parameters["request_ids"].string_param == "grpc-pair-0,grpc-pair-1"


def test_health_and_metadata(stack):
    stub = stack.stub
    assert stub.ServerLive(pb.ServerLiveRequest()).live is True
    assert stub.ServerReady(pb.ServerReadyRequest()).ready is True
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL)).ready is True
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL, version="banking@9.9.9")).ready is False
    assert stub.ServerMetadata(pb.ServerMetadataRequest()).name == "finserve"
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL))
    rest = stack.client.get(f"/v2/models/{MODEL}").json()
    assert (meta.name, list(meta.versions), meta.platform) == (
        rest["name"],
        rest["versions"],
        rest["platform"],
    )
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("text", "BYTES", [-1])]
    assert [t.name for t in meta.outputs] == [o["name"] for o in rest["outputs"]] == list(OUTPUTS)
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "not served" in err.value.details()
    assert "nope" not in err.value.details()  # client input is never echoed
    with pytest.raises(grpc.RpcError) as err:
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=MODEL))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def _wrong_datatype() -> pb.ModelInferRequest:
    t = pb.ModelInferRequest.InferInputTensor(
        name="text", datatype="FP32", shape=[1], contents=pb.InferTensorContents(fp32_contents=[1.0])
    )
    return pb.ModelInferRequest(model_name=MODEL, inputs=[t])


def _no_text() -> pb.ModelInferRequest:
    t = pb.ModelInferRequest.InferInputTensor(
        name="question", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[b"hi"])
    )
    return pb.ModelInferRequest(model_name=MODEL, inputs=[t])


@pytest.mark.parametrize(
    ("request_", "metadata", "code", "status", "reason", "needle"),
    [
        (
            infer_request("hi", model="nope"),
            [],
            grpc.StatusCode.NOT_FOUND,
            404,
            "model_not_found",
            "not served",
        ),
        # A version the route does not serve (never deployed, or rolled back) cannot be forced.
        (
            infer_request("hi"),
            [("x-finserve-adapter", "banking@9.9.9")],
            grpc.StatusCode.PERMISSION_DENIED,
            403,
            "forbidden",
            "serves now",
        ),
        (_wrong_datatype(), [], grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request", "datatype BYTES"),
        (_no_text(), [], grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request", "named 'text'"),
        (
            pb.ModelInferRequest(model_name=MODEL),
            [],
            grpc.StatusCode.INVALID_ARGUMENT,
            400,
            "invalid_request",
            "inputs",
        ),
        (
            infer_request(f"my ssn is {SSN}, card lost"),
            [],
            grpc.StatusCode.FAILED_PRECONDITION,
            422,
            "pii_blocked",
            "US_SSN",
        ),
        (
            infer_request("x" * 70_000),
            [],
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            413,
            "payload_too_large",
            "bytes",
        ),
        # Once INTERNAL with no line: the audit record itself refused a model over 200 characters.
        (infer_request("hi", model="m" * 300), [], grpc.StatusCode.NOT_FOUND, 404, "model_not_found", ""),
    ],
    ids=[
        "unknown-model",
        "unknown-adapter",
        "wrong-datatype",
        "missing-text",
        "no-inputs",
        "pii-blocked",
        "too-large",
        "long-model",
    ],
)
def test_errors_map_to_status_codes_and_are_audited(
    stack, request, request_, metadata, code, status, reason, needle
):
    rid = f"grpc-err-{request.node.callspec.id}"
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.ModelInfer(request_, metadata=[("x-request-id", rid), *metadata], timeout=120)
    assert err.value.code() == code
    assert needle in err.value.details() and "Traceback" not in err.value.details()
    info = error_details_pb2.ErrorInfo()
    assert rich_status(err.value).details[0].Unpack(info) and info.reason == reason
    line = audit_line(stack, rid)
    assert (line["status"], line["error"]) == (status, reason)
    assert SSN not in json.dumps(line)


def test_api_key_is_required_when_set(stack, monkeypatch):
    monkeypatch.setenv(stack.config.gateway.api_key_env, "s3cret")
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.ModelInfer(infer_request("hi", model="nope"), metadata=[("x-request-id", "grpc-noauth")])
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert audit_line(stack, "grpc-noauth")["status"] == 401
    with pytest.raises(grpc.RpcError) as err:  # past the key check: the unknown model answers
        stack.stub.ModelInfer(
            infer_request("hi", model="nope"), metadata=[("authorization", "Bearer s3cret")]
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_model_version_selects_the_adapter_like_the_rest_header(stack):
    req = infer_request("hi")
    req.model_version = "banking@9.9.9"
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.ModelInfer(req, timeout=120)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "serves now" in err.value.details()
    assert "/" not in err.value.details() and "9.9.9" not in err.value.details()  # client input is not echoed


def test_finserve_ask_over_grpc(stack):
    from typer.testing import CliRunner

    from finserve.cli import app

    result = CliRunner().invoke(
        app,
        [
            "ask",
            "--grpc",
            "--url",
            f"127.0.0.1:{stack.port}",
            "--max-tokens",
            "8",
            f"Where is my card {CARD}?",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "intent=" in result.output and "adapter=base@0.0.0" in result.output
    assert CARD not in result.output


async def test_vector_store_down_is_unavailable_with_retry_info(tmp_path, small_index):
    """Milvus unreachable: UNAVAILABLE, a RetryInfo and retry-after, and an audit line (no LLM needed)."""
    from netutil import free_port
    from stack_config import stack_config

    from finserve.serving.local import build_local_stack
    from finserve.serving.oip_grpc.server import start_grpc_server
    from finserve.serving.oip_grpc.servicer import InferenceServicer

    cfg = stack_config(tmp_path, small_index)
    cfg.retrieval = cfg.retrieval.model_copy(
        update={
            "milvus_uri": f"http://127.0.0.1:{free_port()}",
            "milvus_timeout_s": 1.0,
            "milvus_retry_s": 30.0,
        }
    )
    local = build_local_stack(cfg, with_generator=False)
    server, port = await start_grpc_server(InferenceServicer(local.pipeline, local.readiness), "127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = GRPCInferenceServiceStub(channel)
            assert (await stub.ServerReady(pb.ServerReadyRequest())).ready is False
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ModelInfer(
                    infer_request("Where is my card?"), metadata=[("x-request-id", "grpc-down")]
                )
    finally:
        await server.stop(grace=None)
        local.retriever.close()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    trailers = dict(err.value.trailing_metadata())
    retry = error_details_pb2.RetryInfo()
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert any(d.Unpack(retry) for d in status.details) and retry.retry_delay.seconds >= 1
    assert int(trailers["retry-after"]) == retry.retry_delay.seconds
    assert "127.0.0.1" not in err.value.details()
    line = list(read_records(cfg.audit.path))[-1]
    assert (line["request_id"], line["status"], line["error"]) == ("grpc-down", 503, "backend_unavailable")
