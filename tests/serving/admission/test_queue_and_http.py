"""Load shedding and limits as a client sees them: the bounded generator queue (503 + Retry-After, audited),
429 with OpenAI's headers, the OIP v2 question cap, docs off by default.

The guard (Presidio), router, audit log and HTTP app are real; retrieval and the generator are stand-ins
(the real ones run in the slow tests): the generator can be held mid-generation, which is how a full
queue is made without timing anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from scripted_stages import scripted_pipeline

from finserve.serving.admission import AdmissionConfig, QueueConfig, RateLimitConfig, RateLimits
from finserve.serving.admission.queue import AdmissionQueue, should_shed
from finserve.serving.audit import read_records
from finserve.serving.config import DEFAULT_MODEL, ServingConfig
from finserve.serving.errors import BackendUnavailable, Overloaded, map_error
from finserve.serving.gateway import create_api
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.pipeline import Pipeline, RequestContext
from finserve.serving.schemas import ChatCompletionRequest
from finserve.serving.stages import LocalGuard

HANG_GUARD_S = 60  # only bounds a hang; nothing here asserts a duration


@pytest.fixture(scope="module")
def guard() -> LocalGuard:
    return LocalGuard(PIIGuard(ServingConfig().guard))


def _pipeline(tmp_path: Path, guard: LocalGuard, admission: AdmissionConfig) -> Pipeline:
    # Route policy error: a shed request is answered as one here (with "fallback" it gets the curated answer,
    # tests/serving/degrade).
    return scripted_pipeline(ServingConfig(admission=admission, degrade={"policy": "error"}), tmp_path, guard)


def _request(stream: bool = False) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model=DEFAULT_MODEL, stream=stream, messages=[{"role": "user", "content": "Where is my card?"}]
    )


@pytest.mark.parametrize(
    ("running", "waiting", "shed"),
    [(0, 0, False), (1, 0, False), (2, 0, False), (2, 1, False), (2, 2, True), (3, 5, True)],
)
def test_shed_only_when_every_slot_and_the_line_are_full(running: int, waiting: int, shed: bool) -> None:
    assert should_shed(running, waiting, QueueConfig(max_generating=2, max_waiting=2)) is shed


async def test_queue_admits_n_running_and_m_waiting_then_sheds() -> None:
    queue = AdmissionQueue(QueueConfig(max_generating=1, max_waiting=1, retry_after_s=3), CollectorRegistry())
    first = queue.ticket()
    await first.wait()
    second = asyncio.ensure_future(queue.ticket().wait())
    await asyncio.sleep(0)  # the second is now in line
    assert (queue.running, queue.waiting) == (1, 1)
    with pytest.raises(Overloaded) as shed:
        await queue.ticket().wait()
    assert isinstance(shed.value, BackendUnavailable)  # a fallback answer may stand in for it
    m = map_error(shed.value)
    assert (m.status, m.code, m.retry_after, m.grpc_code.name) == (503, "overloaded", 3, "UNAVAILABLE")
    first.release()
    first.release()  # idempotent: releasing twice frees one slot, not two
    await asyncio.wait_for(second, HANG_GUARD_S)
    assert (queue.running, queue.waiting) == (1, 0)


async def test_a_shed_request_is_503_and_audited(tmp_path: Path, guard: LocalGuard) -> None:
    pipeline = _pipeline(tmp_path, guard, AdmissionConfig(queue=QueueConfig(max_generating=1, max_waiting=0)))
    pipeline.generator.hold = True  # type: ignore[attr-defined]
    busy = asyncio.ensure_future(pipeline.chat(_request(), RequestContext(request_id="busy")))
    while pipeline.generator.started == 0 and not busy.done():  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)
    assert not busy.done(), busy.exception()
    for stream, rid in ((False, "shed"), (True, "shed-stream")):
        with pytest.raises(Overloaded):
            if stream:
                await pipeline.chat_stream(_request(stream=True), RequestContext(request_id=rid))
            else:
                await pipeline.chat(_request(), RequestContext(request_id=rid))
    pipeline.generator.release.set()  # type: ignore[attr-defined]
    assert (await asyncio.wait_for(busy, HANG_GUARD_S)).choices[0].message.content
    records = {r["request_id"]: r for r in read_records(pipeline.config.audit.path)}
    assert {k: (r["status"], r["error"]) for k, r in records.items()} == {
        "shed": (503, "overloaded"),
        "shed-stream": (503, "overloaded"),
        "busy": (200, None),
    }
    assert pipeline.metrics.registry.get_sample_value("finserve_admission_shed_total") == 2
    assert (pipeline.admission.queue.running, pipeline.admission.queue.waiting) == (0, 0)


@pytest.fixture
def limited_client(tmp_path: Path, guard: LocalGuard) -> Iterator[TestClient]:
    rate = RateLimitConfig(
        per_principal=RateLimits(requests_per_minute=2), per_tenant=RateLimits(), redis_url=None
    )
    pipeline = _pipeline(tmp_path, guard, AdmissionConfig(rate=rate))

    async def readiness() -> dict[str, bool]:
        return {"audit": True}

    with TestClient(create_api(pipeline, readiness)) as client:
        client.pipeline = pipeline  # type: ignore[attr-defined]
        yield client


def test_http_429_with_retry_after_and_openai_headers(limited_client: TestClient) -> None:
    body = {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "Where is my card?"}]}
    ok = limited_client.post("/v1/chat/completions", json=body)
    assert ok.status_code == 200 and ok.headers["x-ratelimit-limit-requests"] == "2"
    assert ok.headers["x-ratelimit-remaining-requests"] == "1"
    assert limited_client.post("/v1/chat/completions", json={**body, "stream": True}).status_code == 200
    refused = limited_client.post("/v1/chat/completions", json=body, headers={"x-request-id": "too-many"})
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    [line] = [
        r
        for r in read_records(limited_client.pipeline.config.audit.path)  # type: ignore[attr-defined]
        if r["request_id"] == "too-many"
    ]
    assert (line["status"], line["error"]) == (429, "rate_limit_exceeded")


def test_oip_v2_refuses_more_questions_than_configured(limited_client: TestClient) -> None:
    cap = limited_client.pipeline.config.gateway.max_questions  # type: ignore[attr-defined]
    questions = ["Where is my card?"] * (cap + 1)
    resp = limited_client.post(
        f"/v2/models/{DEFAULT_MODEL}/infer",
        json={
            "inputs": [
                {"name": "other", "shape": [1], "datatype": "BYTES", "data": ["x"]},
                {"name": "text", "shape": [cap + 1], "datatype": "BYTES", "data": questions},
            ]
        },
    )
    # The Open Inference Protocol's error shape: the message under "error", the facts beside it.
    assert resp.status_code == 400 and resp.json()["param"] == "inputs[1].shape", resp.text
    assert f"at most {cap}" in resp.json()["error"]
    assert limited_client.pipeline.generator.started == 0  # type: ignore[attr-defined]


def test_docs_and_openapi_are_off_by_default(limited_client: TestClient) -> None:
    assert limited_client.get("/docs").status_code == 404
    assert limited_client.get("/openapi.json").status_code == 404


class _GrpcContext:
    """What the servicer uses of a gRPC context (grpc.aio's and Ray's share these), recorded."""

    def __init__(self) -> None:
        self.code, self.details, self.trailers = None, None, []

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return [("x-request-id", "grpc-limits")]

    def peer(self) -> str:
        return "ipv4:10.9.9.9:5000"

    def time_remaining(self) -> float | None:
        return None  # the client set no gRPC deadline

    def set_code(self, code) -> None:  # noqa: ANN001
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def set_trailing_metadata(self, trailers) -> None:  # noqa: ANN001
        self.trailers = list(trailers)


async def test_grpc_rate_limit_is_resource_exhausted_with_retry_after(
    tmp_path: Path, guard: LocalGuard
) -> None:
    from finserve.serving.oip_grpc import grpc_predict_v2_pb2 as pb
    from finserve.serving.oip_grpc.servicer import InferenceServicer

    rate = RateLimitConfig(
        per_principal=RateLimits(requests_per_minute=1), per_tenant=RateLimits(), redis_url=None
    )
    pipeline = _pipeline(tmp_path, guard, AdmissionConfig(rate=rate))

    async def readiness() -> dict[str, bool]:
        return {"audit": True}

    servicer = InferenceServicer(pipeline, readiness)
    text = pb.ModelInferRequest.InferInputTensor(
        name="text",
        datatype="BYTES",
        shape=[1],
        contents=pb.InferTensorContents(bytes_contents=[b"Where is my card?"]),
    )
    request = pb.ModelInferRequest(model_name=DEFAULT_MODEL, inputs=[text])
    ok = _GrpcContext()
    await servicer.ModelInfer(request, ok)
    assert ok.code is None and ("x-ratelimit-remaining-requests", "0") in ok.trailers
    refused = _GrpcContext()
    await servicer.ModelInfer(request, refused)
    assert refused.code.name == "RESOURCE_EXHAUSTED" and "rate limit" in refused.details
    assert any(k == "retry-after" and int(v) >= 1 for k, v in refused.trailers)
