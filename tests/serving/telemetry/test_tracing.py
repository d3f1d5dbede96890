"""One request through the in-process HTTP app: a span per stage, all in the client's trace, and the trace
id in the response headers and the audit line.

The guard (Presidio), router, audit log, metrics and HTTP app are the real ones; retrieval and the
generator are scripted stand-ins (the real ones run in tests/serving/test_e2e_stack.py, which checks the
trace across Ray deployments): what is under test is the spans' wiring, not retrieval or decoding.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from scripted_stages import Generator, Retrieval, scripted_pipeline

from finserve.serving.audit import read_records
from finserve.serving.config import DEFAULT_MODEL, ServingConfig
from finserve.serving.gateway import create_api
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.pipeline import Pipeline
from finserve.serving.stages import LocalGuard

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
CARD = "4111 1111 1111 1111"
STAGES = {"guard_input", "retrieval", "guard_context", "intent", "generate", "guard_output", "audit"}
WORDS = ["Cards", "arrive", "within", "five", "working", "days."]


@pytest.fixture(scope="module")
def guard() -> LocalGuard:
    return LocalGuard(PIIGuard(ServingConfig().guard))


@pytest.fixture
def app(tmp_path: Path, guard: LocalGuard, spans: InMemorySpanExporter) -> tuple[TestClient, Pipeline]:
    # As the engines' collect() reports it: first text 0.05 s, last 0.3 s after taking the request.
    generator = Generator(WORDS, timings=(0.05, 0.3))
    pipeline = scripted_pipeline(
        ServingConfig(), tmp_path, guard, generator=generator, retrieval=Retrieval("miss")
    )

    async def ready() -> dict[str, bool]:
        return {"all": True}

    return TestClient(create_api(pipeline, ready)), pipeline


def _body(stream: bool = False) -> dict:
    return {
        "model": DEFAULT_MODEL,
        "stream": stream,
        "messages": [{"role": "user", "content": f"Where is my card {CARD}?"}],
    }


def _check_trace(spans: InMemorySpanExporter, pipeline: Pipeline) -> dict[str, object]:
    finished = spans.get_finished_spans()
    by_name = {s.name: s for s in finished}
    assert {f"finserve.{stage}" for stage in STAGES} <= set(by_name)
    assert {format(s.context.trace_id, "032x") for s in finished} == {TRACE_ID}
    [server] = [
        s for s in finished if s.parent is not None and format(s.parent.span_id, "016x") == CLIENT_SPAN
    ]
    for stage in STAGES:
        assert by_name[f"finserve.{stage}"].parent.span_id == server.context.span_id, stage
    [record] = read_records(pipeline.config.audit.path)
    assert record["trace_id"] == TRACE_ID
    # Attributes carry ids, tiers and counts; no span holds the request's text.
    assert CARD not in json.dumps([dict(s.attributes or {}) for s in finished])
    return by_name


def test_one_request_is_one_trace_under_the_clients_traceparent(app, spans: InMemorySpanExporter) -> None:
    client, pipeline = app
    resp = client.post("/v1/chat/completions", json=_body(), headers={"traceparent": TRACEPARENT})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-trace-id"] == TRACE_ID
    assert resp.headers["traceparent"].startswith(f"00-{TRACE_ID}-")
    by_name = _check_trace(spans, pipeline)
    assert by_name["finserve.retrieval"].attributes["finserve.cache"] == "miss"
    generate = by_name["finserve.generate"].attributes
    assert (generate["finserve.adapter_version"], generate["finserve.completion_tokens"]) == (
        "0.0.0",
        len(WORDS),
    )
    # TTFT: the engine's first-token time (0.05 s) plus the time before the generator call.
    ttft = pipeline.metrics.registry.get_sample_value(
        "finserve_time_to_first_token_seconds_count",
        {"model": DEFAULT_MODEL, "adapter": "base", "version": "0.0.0"},
    )
    itl_sum = pipeline.metrics.registry.get_sample_value(
        "finserve_inter_token_latency_seconds_sum",
        {"model": DEFAULT_MODEL, "adapter": "base", "version": "0.0.0"},
    )
    assert ttft == 1 and itl_sum == pytest.approx((0.3 - 0.05) / (len(WORDS) - 1))


def test_a_stream_is_traced_and_timed_the_same_way(app, spans: InMemorySpanExporter) -> None:
    client, pipeline = app
    with client.stream(
        "POST", "/v1/chat/completions", json=_body(stream=True), headers={"traceparent": TRACEPARENT}
    ) as resp:
        assert resp.headers["x-trace-id"] == TRACE_ID
        text = "".join(resp.iter_text())
    assert "[DONE]" in text
    by_name = _check_trace(spans, pipeline)
    assert by_name["finserve.generate"].attributes["finserve.completion_tokens"] == len(WORDS)
    labels = {"model": DEFAULT_MODEL, "adapter": "base", "version": "0.0.0"}
    assert (
        pipeline.metrics.registry.get_sample_value("finserve_time_to_first_token_seconds_count", labels) == 1
    )
    assert (
        pipeline.metrics.registry.get_sample_value("finserve_inter_token_latency_seconds_count", labels) == 1
    )


def test_a_rejected_request_is_traced_and_audited_with_the_trace_id(app, spans: InMemorySpanExporter) -> None:
    client, pipeline = app
    resp = client.post("/v1/chat/completions", content=b"{oops", headers={"traceparent": TRACEPARENT})
    assert resp.status_code == 400 and resp.headers["x-trace-id"] == TRACE_ID
    [record] = read_records(pipeline.config.audit.path)
    assert (record["status"], record["trace_id"]) == (400, TRACE_ID)


def test_without_a_traceparent_the_request_starts_its_own_trace(app, spans: InMemorySpanExporter) -> None:
    client, pipeline = app
    resp = client.post("/v1/chat/completions", json=_body())
    trace_id = resp.headers["x-trace-id"]
    assert len(trace_id) == 32 and trace_id != TRACE_ID
    [record] = read_records(pipeline.config.audit.path)
    assert record["trace_id"] == trace_id


async def test_grpc_answers_and_errors_carry_the_trace_in_trailing_metadata(
    app, spans: InMemorySpanExporter
) -> None:
    """As HTTP's traceparent / x-trace-id headers: the call's server span, child of the client's traceparent."""
    import grpc

    from finserve.serving.oip_grpc import grpc_predict_v2_pb2 as pb
    from finserve.serving.oip_grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
    from finserve.serving.oip_grpc.server import start_grpc_server
    from finserve.serving.oip_grpc.servicer import InferenceServicer

    _, pipeline = app

    async def ready() -> dict[str, bool]:
        return {"all": True}

    text = pb.ModelInferRequest.InferInputTensor(
        name="text",
        datatype="BYTES",
        shape=[1],
        contents=pb.InferTensorContents(bytes_contents=[b"Where is my card?"]),
    )
    server, port = await start_grpc_server(InferenceServicer(pipeline, ready), "127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = GRPCInferenceServiceStub(channel)
            call = stub.ModelInfer(
                pb.ModelInferRequest(model_name=DEFAULT_MODEL, inputs=[text]),
                metadata=[("traceparent", TRACEPARENT), ("x-request-id", "grpc-traced")],
            )
            await call
            answered = dict(await call.trailing_metadata())
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ModelInfer(
                    pb.ModelInferRequest(model_name="nope", inputs=[text]),
                    metadata=[("traceparent", TRACEPARENT)],
                )
    finally:
        await server.stop(grace=None)
    assert answered["x-request-id"] == "grpc-traced" and answered["x-trace-id"] == TRACE_ID
    version, trace_id, span_id, _ = answered["traceparent"].split("-")
    assert (version, trace_id) == (
        "00",
        TRACE_ID,
    ) and span_id != CLIENT_SPAN  # the server span, not the client's
    [server_span] = [s for s in spans.get_finished_spans() if format(s.context.span_id, "016x") == span_id]
    assert server_span.parent.span_id == int(CLIENT_SPAN, 16)
    assert [r["trace_id"] for r in read_records(pipeline.config.audit.path)] == [TRACE_ID, TRACE_ID]
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert dict(err.value.trailing_metadata())["x-trace-id"] == TRACE_ID
