"""Over gRPC the deadline comes from x-finserve-deadline-ms metadata or the client's own gRPC deadline,
and a hanging generator is answered with the curated fallback before that deadline.

Real Presidio, MiniLM + Milvus Lite, audit log and gRPC server; the generator is the openai engine on a
socket that accepts and never answers (no model is loaded: none is ever reached).
"""

from __future__ import annotations

import grpc
from fastapi.testclient import TestClient
from stack_config import stack_config

from finserve.serving.audit import read_records
from finserve.serving.config import DEFAULT_MODEL
from finserve.serving.inference.config import OpenAIOptions
from finserve.serving.local import create_local_app
from finserve.serving.oip_grpc import grpc_predict_v2_pb2 as pb
from finserve.serving.oip_grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub


def infer(question: str) -> pb.ModelInferRequest:
    text = pb.ModelInferRequest.InferInputTensor(
        name="text",
        datatype="BYTES",
        shape=[1],
        contents=pb.InferTensorContents(bytes_contents=[question.encode()]),
    )
    return pb.ModelInferRequest(model_name=DEFAULT_MODEL, inputs=[text])


def test_grpc_deadlines_reach_the_pipeline(tmp_path, small_index, hanging_url) -> None:
    cfg = stack_config(tmp_path, small_index)
    cfg.generator = cfg.generator.model_copy(
        update={
            "engine": "openai",
            "openai": OpenAIOptions(base_url=hanging_url, default_model="m", read_timeout_s=600),
        }
    )
    # The default deadline is longer than the client waits below: only a propagated deadline answers in time.
    cfg.degrade = cfg.degrade.model_copy(update={"deadline_default_ms": 110_000})
    app = create_local_app(cfg, grpc_port=0)
    with TestClient(app), grpc.insecure_channel(f"127.0.0.1:{app.state.grpc_port}") as channel:
        stub = GRPCInferenceServiceStub(channel)
        by_metadata = stub.ModelInfer(
            infer("My card has not arrived yet"), timeout=100, metadata=[("x-finserve-deadline-ms", "1500")]
        )
        by_grpc_deadline = stub.ModelInfer(infer("How do I activate my card?"), timeout=20)
    texts = [
        {t.name: t.contents.bytes_contents[0].decode() for t in r.outputs}["text"]
        for r in (by_metadata, by_grpc_deadline)
    ]
    records = list(read_records(cfg.audit.path))
    assert [(r["status"], r["degraded"], r["error"]) for r in records] == [
        (200, "fallback", "deadline_exceeded")
    ] * 2
    assert texts == [r["output"] for r in records]
