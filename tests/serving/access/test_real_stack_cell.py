"""One cell of the matrix on the whole in-process stack (the real SmolLM2 generator, Presidio, MiniLM +
Milvus Lite, a real Redis L2, the audit log): a per-client key answers for its tenant and is refused
for another, over REST and gRPC, each outcome audited with the key id."""

from __future__ import annotations

import grpc
import pytest

from finserve.serving.access import AuthConfig
from finserve.serving.access.keys import KeysFile, new_key, write_keys
from finserve.serving.audit import read_records
from finserve.serving.oip_grpc import grpc_predict_v2_pb2 as pb
from finserve.serving.oip_grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

pytestmark = pytest.mark.slow  # loads the real model

MODEL = "finserve-banking"


@pytest.fixture
def stack(tmp_path, small_index, redis_server):
    from fastapi.testclient import TestClient
    from stack_config import stack_config

    from finserve.serving.local import create_local_app

    key, record = new_key("retail-app", ["retail"], ["infer"])
    write_keys(tmp_path / "keys.json", KeysFile(keys=[record]))
    cfg = stack_config(tmp_path, small_index, redis_server.url)
    cfg.auth = AuthConfig(keys_file=str(tmp_path / "keys.json"))
    app = create_local_app(cfg, grpc_port=0)
    with TestClient(app) as client, grpc.insecure_channel(f"127.0.0.1:{app.state.grpc_port}") as channel:
        yield client, GRPCInferenceServiceStub(channel), cfg, key, f"key:{record.id}"


def test_key_answers_for_its_tenant_and_is_refused_for_another(stack):
    client, stub, cfg, key, principal = stack
    body = {
        "model": MODEL,
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "My card has not arrived"}],
    }
    ok = client.post(
        "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}", "x-request-id": "real-ok"},
    )
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]
    other = client.post(
        "/v1/chat/completions",
        json=body,
        headers={
            "authorization": f"Bearer {key}",
            "x-finserve-tenant": "business",
            "x-request-id": "real-403",
        },
    )
    assert other.status_code == 403 and principal in other.json()["error"]["message"]
    anonymous = client.post("/v1/chat/completions", json=body, headers={"x-request-id": "real-401"})
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")

    text = pb.ModelInferRequest.InferInputTensor(
        name="text",
        datatype="BYTES",
        shape=[1],
        contents=pb.InferTensorContents(bytes_contents=[b"lost card"]),
    )
    req = pb.ModelInferRequest(
        model_name=MODEL, inputs=[text], parameters={"max_tokens": pb.InferParameter(int64_param=4)}
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(req, metadata=[("x-request-id", "real-grpc-401")], timeout=300)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    stub.ModelInfer(
        req, metadata=[("authorization", f"Bearer {key}"), ("x-request-id", "real-grpc-ok")], timeout=300
    )

    lines = {line["request_id"]: line for line in read_records(cfg.audit.path)}
    assert {rid: (lines[rid]["status"], lines[rid]["principal"], lines[rid]["tenant"]) for rid in lines} == {
        "real-ok": (200, principal, "retail"),
        "real-403": (403, principal, "-"),
        "real-401": (401, None, "-"),
        "real-grpc-401": (401, None, "-"),
        "real-grpc-ok": (200, principal, "retail"),
    }
