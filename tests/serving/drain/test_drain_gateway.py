"""A draining Gateway: every probe says not ready while the requests it holds, and new ones, are still answered;
the in-flight count covers a request until its last byte. The HTTP app, guard, router and audit log are the real
ones; the generator is scripted so a request can be held open (tests/serving/scripted_stages.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from scripted_stages import scripted_pipeline

from finserve.serving.audit import read_records
from finserve.serving.config import DEFAULT_MODEL, ServingConfig
from finserve.serving.drain import DrainState
from finserve.serving.gateway import create_api
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.oip_grpc import grpc_predict_v2_pb2 as pb
from finserve.serving.oip_grpc.health import HealthServicer, health_pb2
from finserve.serving.oip_grpc.servicer import InferenceServicer
from finserve.serving.stages import LocalGuard

# Ray Serve's ingress wrapper has an async __del__ that only a replica awaits; garbage collection here warns.
pytestmark = pytest.mark.filterwarnings("ignore:coroutine .*ASGIIngressWrapper.__del__:RuntimeWarning")
HANG_GUARD_S = 60  # only bounds a hang; nothing asserts a duration
CHAT = {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "Where is my card?"}]}


class _Context:
    """The few calls the servicers make on a gRPC context."""

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return []

    def set_code(self, code: object) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        pass

    def set_trailing_metadata(self, md: object) -> None:
        pass


@pytest.fixture(scope="module")
def guard() -> LocalGuard:
    return LocalGuard(PIIGuard(ServingConfig().guard))


async def test_draining_replica_says_not_ready_and_still_answers(tmp_path: Path, guard: LocalGuard) -> None:
    pipeline = scripted_pipeline(ServingConfig(), tmp_path, guard)
    generator = pipeline.generator
    generator.hold = True  # type: ignore[attr-defined]
    drain = DrainState()

    async def stages() -> dict[str, bool]:
        return {"audit": await pipeline.audit.ready()}

    probe = drain.gate(stages)
    api = create_api(pipeline, probe, drain)
    health, servicer = HealthServicer(probe), InferenceServicer(pipeline, probe)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://gw") as client:
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"ready": True, "stages": {"audit": True}})
        held = asyncio.ensure_future(client.post("/v1/chat/completions", json=CHAT))
        async with asyncio.timeout(HANG_GUARD_S):
            while generator.started == 0:  # type: ignore[attr-defined]
                await asyncio.sleep(0.01)
        assert drain.in_flight == 1  # the held request; the probe above was not counted

        assert drain.start() == 1
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"ready": False, "draining": True, "stages": {"accepting": False}}
        v2 = await client.get("/v2/health/ready")
        assert (v2.status_code, v2.json()) == (503, {"ready": False, "draining": True})
        check = await health.Check(health_pb2.HealthCheckRequest(service=""), _Context())
        assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert (await servicer.ServerReady(pb.ServerReadyRequest(), _Context())).ready is False
        assert drain.in_flight == 1  # probes while draining are not counted either

        generator.hold = False  # type: ignore[attr-defined]
        late = await client.post("/v1/chat/completions", json=CHAT)  # the load balancer has not noticed yet
        assert late.status_code == 200
        generator.release.set()  # type: ignore[attr-defined]
        first = await asyncio.wait_for(held, HANG_GUARD_S)
        assert first.status_code == 200 and first.json()["choices"][0]["message"]["content"]
    assert drain.in_flight == 0
    assert [r["status"] for r in read_records(pipeline.config.audit.path)] == [200, 200]


async def test_a_stream_counts_until_its_last_byte(tmp_path: Path, guard: LocalGuard) -> None:
    pipeline = scripted_pipeline(ServingConfig(), tmp_path, guard)
    drain = DrainState()

    async def stages() -> dict[str, bool]:
        return {}

    api = create_api(pipeline, drain.gate(stages), drain)
    # Called as a server calls it (httpx's ASGITransport would buffer the stream): each message sent is noted
    # with the count at that moment.
    body = json.dumps({**CHAT, "stream": True}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1234),
        "server": ("gw", 80),
    }
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[tuple[dict, int]] = []

    async def receive() -> dict:
        if incoming:
            return incoming.pop()
        await asyncio.Event().wait()  # the client stays connected
        return {}

    async def send(message: dict) -> None:
        sent.append((message, drain.in_flight))

    await asyncio.wait_for(api(scope, receive, send), HANG_GUARD_S)
    bodies = [(m.get("body", b""), n) for m, n in sent if m["type"] == "http.response.body"]
    assert sent[0][0]["status"] == 200 and b"data: [DONE]" in b"".join(b for b, _ in bodies)
    assert all(n == 1 for _, n in bodies)  # counted up to and with its last byte
    assert drain.in_flight == 0


# ---- the Ray Serve Gateway class (built without Ray, its handles stand-ins: tests/serving/fake_handles.py) ----


async def test_gateway_replica_drains_on_request_and_counts_grpc_inference(tmp_path: Path) -> None:
    from fake_handles import FakeHandle

    from finserve.contracts import AdapterRef
    from finserve.serving.app import Gateway
    from finserve.serving.inference.types import GenerationResult
    from finserve.serving.retrieval import RetrievalResult

    release, started = asyncio.Event(), asyncio.Event()

    async def search(query: str, filters: object = None) -> RetrievalResult:
        return RetrievalResult(hits=[], examples=[], cache="off", index_version="v1")

    async def yes() -> bool:
        return True

    async def no_texts() -> list[str]:
        return []

    async def no_scores(*args: object) -> None:
        return None

    async def generate(request: object) -> GenerationResult:
        started.set()
        await release.wait()
        return GenerationResult(
            text="It is on its way.",
            prompt_tokens=5,
            completion_tokens=5,
            finish_reason="stop",
            adapter=AdapterRef.base(),
        )

    cfg = ServingConfig()
    cfg.audit = cfg.audit.model_copy(update={"path": tmp_path / "audit.jsonl"})
    gateway = Gateway.__new__(
        Gateway
    )  # as a Ray Serve replica builds it: the ingress wrapper's __init__ is async
    await gateway.__init__(
        cfg.model_dump(mode="json"),
        None,
        FakeHandle(search=search, ready=yes, knowledge_texts=no_texts),
        FakeHandle(generate=generate, ready=yes, head_scores=no_scores),
        None,
    )
    text = pb.ModelInferRequest.InferInputTensor(
        name="text", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[b"Card?"])
    )
    call = asyncio.ensure_future(
        gateway.ModelInfer(
            pb.ModelInferRequest(model_name=DEFAULT_MODEL, inputs=[text]), grpc_context=_Context()
        )
    )
    await asyncio.wait_for(started.wait(), HANG_GUARD_S)
    assert await gateway.in_flight() == 1
    check = health_pb2.HealthCheckRequest(service="")
    assert (
        await gateway.Check(check, grpc_context=_Context())
    ).status == health_pb2.HealthCheckResponse.SERVING
    assert await gateway.start_draining() == 1
    assert (
        await gateway.Check(check, grpc_context=_Context())
    ).status == health_pb2.HealthCheckResponse.NOT_SERVING
    release.set()
    answer = await asyncio.wait_for(call, HANG_GUARD_S)
    assert {o.name for o in answer.outputs} >= {"text"}
    assert await gateway.in_flight() == 0


def test_ray_serve_stops_a_gateway_replica_within_the_drain_grace() -> None:
    from finserve.serving.app import build_app

    cfg = ServingConfig.model_validate({"drain": {"grace_s": 40, "min_not_ready_s": 2, "poll_s": 0.5}})
    deployment = build_app(cfg)._bound_deployment
    config = deployment._deployment_config
    assert (config.graceful_shutdown_timeout_s, config.graceful_shutdown_wait_loop_s) == (40, 0.5)
