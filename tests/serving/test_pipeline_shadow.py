"""Shadow traffic through the pipeline and its HTTP app: the client gets the stable answer only, the canary's
answer is guarded, audited (route shadow) and measured, and a shadow never delays a live request.

Real: the Presidio guard, the retriever (MiniLM + Milvus Lite small index; its embedder compares the answers),
the router, the audit log, the HTTP app and /metrics. Stand-ins, and why: the generator, because the slow
canary must be held mid-answer by an event this test controls (a real engine cannot be paused at a known
point, and the assertions are about order, not speed); the intent head, so the two versions' intents are
known without loading the LLM. The slow test at the end runs the real model instead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from finserve.contracts import AdapterRef, Route
from finserve.serving.audit.log import AuditLog
from finserve.serving.config import DEFAULT_MODEL, ServingConfig, ShadowConfig
from finserve.serving.gateway import create_api
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.inference.errors import EngineOverloaded
from finserve.serving.inference.types import GenerationRequest, GenerationResult, StreamChunk, Usage
from finserve.serving.intent import HeadScores
from finserve.serving.pipeline import Pipeline, RequestContext
from finserve.serving.retrieval import Embedder, Retriever
from finserve.serving.routing import Router, RouterConfig
from finserve.serving.schemas import ChatCompletionRequest
from finserve.serving.stages import LocalAudit, LocalGuard

STABLE = AdapterRef(name="banking77", version="1.0.0")
CANARY = AdapterRef(name="banking77", version="1.1.0")
DEADLOCK_GUARD_S = 60  # only bounds a hang; the assertions are about order, not speed
CARD = "4111 1111 1111 1111"

STABLE_ANSWER = "Your new card is on its way and should arrive within three working days."
CANARY_ANSWER = f"Your card should arrive soon; if not, quote card {CARD} to us."


class Generator:
    """Stable answers at once; the canary signals ``canary_started`` and answers once ``release`` is set.

    Stable requests whose last message contains "hold" wait for ``release_live`` (a live generation kept in flight).
    """

    def __init__(self, canary_fails: bool = False) -> None:
        self.canary_started, self.release = asyncio.Event(), asyncio.Event()
        self.live_started, self.release_live = asyncio.Event(), asyncio.Event()
        self.canary_fails = canary_fails
        self.requests: list[GenerationRequest] = []
        self.canary_finished = 0

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        self.requests.append(request)
        if request.adapter == CANARY:
            self.canary_started.set()
            await self.release.wait()
            if self.canary_fails:
                raise EngineOverloaded("canary pool full")
            self.canary_finished += 1
            return GenerationResult(
                text=CANARY_ANSWER,
                prompt_tokens=40,
                completion_tokens=14,
                finish_reason="stop",
                adapter=request.adapter,
            )
        if "hold" in request.messages[-1].content:
            self.live_started.set()
            await self.release_live.wait()
        return GenerationResult(
            text=STABLE_ANSWER,
            prompt_tokens=40,
            completion_tokens=13,
            finish_reason="stop",
            adapter=request.adapter,
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        self.requests.append(request)
        assert request.adapter != CANARY, "shadows are generated whole, never streamed"
        words = STABLE_ANSWER.split(" ")
        for i, word in enumerate(words):
            yield StreamChunk(delta=word if i == 0 else f" {word}")
        yield StreamChunk(finish_reason="stop", usage=Usage(prompt_tokens=40, completion_tokens=len(words)))


class Head:
    """Each version's own intent: the stable says card_arrival; the canary says ``canary_intent``."""

    def __init__(self, canary_intent: str = "lost_or_stolen_card") -> None:
        self.canary_intent = canary_intent
        self.calls: list[tuple[str, AdapterRef]] = []

    async def head_scores(self, masked_text: str, adapter: AdapterRef) -> HeadScores | None:
        self.calls.append((masked_text, adapter))
        label = self.canary_intent if adapter == CANARY else "card_arrival"
        return HeadScores(probabilities={label: 1.0}, retrieval_weight=0.0, vote_temperature=0.05)


@pytest.fixture(scope="module")
def guard() -> LocalGuard:
    return LocalGuard(PIIGuard(ServingConfig().guard))


@pytest.fixture(scope="module")
def embedder(small_index: Path) -> Embedder:
    return Embedder()


def _config(tmp_path: Path, small_index: Path, **shadow: int) -> ServingConfig:
    from stack_config import stack_config

    cfg = stack_config(tmp_path, small_index)
    cfg.shadow = ShadowConfig(**shadow)
    cfg.router = RouterConfig(
        routes={DEFAULT_MODEL: Route(base_model="b", stable=STABLE, canary=CANARY, shadow_percent=100.0)}
    )
    return cfg


@pytest.fixture
async def stack(tmp_path: Path, small_index: Path, guard: LocalGuard, embedder: Embedder, request):
    """(pipeline, generator, head, HTTP client) with every stable request mirrored to the canary."""
    opts = getattr(request, "param", {})
    cfg = _config(tmp_path, small_index, **opts.get("shadow", {}))
    retriever = Retriever(cfg.retrieval, embedder=embedder)
    gen, head = (
        Generator(opts.get("canary_fails", False)),
        Head(opts.get("canary_intent", "lost_or_stolen_card")),
    )
    pipeline = Pipeline(
        cfg,
        guard=guard,
        retrieval=retriever,
        intent=head,
        generator=gen,
        audit=LocalAudit(AuditLog(cfg.audit)),
        router=Router(cfg.router),
    )

    async def ready() -> dict[str, bool]:
        return {"all": True}

    transport = httpx.ASGITransport(app=create_api(pipeline, ready))
    async with httpx.AsyncClient(transport=transport, base_url="http://finserve") as client:
        try:
            yield pipeline, gen, head, client
        finally:
            await pipeline.aclose()
            await retriever.aclose()


def _body(text: str = "My new card still has not arrived", **extra: object) -> dict:
    return {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": text}], **extra}


def _audit(pipeline: Pipeline) -> list[dict]:
    from finserve.serving.audit import read_records

    path = pipeline.config.audit.path
    return list(read_records(path)) if path.exists() else []


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when there are none)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def _post(client: httpx.AsyncClient, body: dict, **headers: str) -> httpx.Response:
    return await asyncio.wait_for(
        client.post("/v1/chat/completions", json=body, headers=headers), DEADLOCK_GUARD_S
    )


async def test_the_client_gets_the_stable_answer_while_the_slow_canary_still_runs(stack) -> None:
    pipeline, gen, head, client = stack
    resp = await _post(
        client, _body(f"My new card {CARD} still has not arrived"), **{"x-request-id": "live-1"}
    )

    # The response is complete while the canary is still held mid-answer: the live path did not wait for it.
    assert resp.status_code == 200, resp.text
    assert gen.canary_started.is_set() and gen.canary_finished == 0 and pipeline.shadows.in_flight == 1
    data = resp.json()
    assert data["choices"][0]["message"]["content"] == STABLE_ANSWER
    assert (data["finserve"]["adapter"], data["finserve"]["route"]) == (str(STABLE), "stable")
    assert "Your card should" not in resp.text and data["finserve"]["intent"] == "card_arrival"
    [live] = _audit(pipeline)
    assert (live["request_id"], live["route"], live["output"]) == ("live-1", "stable", STABLE_ANSWER)

    gen.release.set()
    await asyncio.wait_for(pipeline.shadows.drain(), DEADLOCK_GUARD_S)

    # The shadow reused the live request's guarded prompt (one retrieval, masked input), on the canary.
    live_req, shadow_req = gen.requests
    assert shadow_req.adapter == CANARY and shadow_req.messages == live_req.messages
    assert CARD not in json.dumps(shadow_req.model_dump())
    assert [a for _, a in head.calls] == [STABLE, CANARY]

    live, shadow = _audit(pipeline)
    assert shadow["request_id"] == "live-1-shadow" and shadow["route"] == "shadow"
    assert (shadow["adapter"], shadow["tenant"], shadow["status"]) == (str(CANARY), live["tenant"], 200)
    assert shadow["input"] == live["input"] and CARD not in shadow["input"]
    assert (
        shadow["output"] and CARD not in shadow["output"] and shadow["output"].startswith("Your card should")
    )
    assert shadow["pii"] == {"output": {"CREDIT_CARD": 1}} and shadow["intent"] == "lost_or_stolen_card"

    text = (await client.get("/metrics")).text
    labels = {"model": DEFAULT_MODEL, "adapter": "banking77", "version": "1.1.0"}
    assert _metric(text, "finserve_shadow_requests_total", outcome="compared", **labels) == 1
    assert _metric(text, "finserve_shadow_answer_similarity_count", **labels) == 1
    similarity = _metric(text, "finserve_shadow_answer_similarity_sum", **labels)
    assert 0.3 < similarity < 0.99  # about the same topic (a card arriving), not the same answer
    assert _metric(text, "finserve_shadow_intent_agreement_total", agree="false", **labels) == 1
    assert _metric(text, "finserve_shadow_pii_findings_total", **labels) == 1
    ratio = len(shadow["output"].split()) / len(STABLE_ANSWER.split())
    assert _metric(text, "finserve_shadow_length_ratio_sum", **labels) == pytest.approx(ratio)
    # Never counted as served: the canary has no request, latency or token series.
    assert _metric(text, "finserve_requests_total", adapter="banking77", version="1.1.0") == 0
    assert _metric(text, "finserve_requests_total", adapter="banking77", version="1.0.0") == 1


async def test_a_streamed_answer_is_mirrored_after_its_last_chunk(stack) -> None:
    pipeline, gen, _, client = stack
    resp = await asyncio.wait_for(
        client.post("/v1/chat/completions", json=_body(stream=True)), DEADLOCK_GUARD_S
    )
    events = [line[6:] for line in resp.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    content = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert content == STABLE_ANSWER
    assert gen.canary_started.is_set() and gen.canary_finished == 0  # the stream ended before the shadow did

    gen.release.set()
    await asyncio.wait_for(pipeline.shadows.drain(), DEADLOCK_GUARD_S)
    live, shadow = _audit(pipeline)
    assert shadow["route"] == "shadow" and shadow["request_id"] == f"{live['request_id']}-shadow"
    text = (await client.get("/metrics")).text
    assert _metric(text, "finserve_shadow_requests_total", outcome="compared") == 1


@pytest.mark.parametrize("stack", [{"canary_intent": "card_arrival"}], indirect=True)
async def test_same_intent_counts_as_agreement(stack) -> None:
    pipeline, gen, _, client = stack
    gen.release.set()
    assert (await _post(client, _body())).status_code == 200
    await asyncio.wait_for(pipeline.shadows.drain(), DEADLOCK_GUARD_S)
    text = (await client.get("/metrics")).text
    assert _metric(text, "finserve_shadow_intent_agreement_total", agree="true") == 1
    assert _metric(text, "finserve_shadow_intent_agreement_total", agree="false") == 0
    assert _metric(text, "finserve_shadow_pii_findings_total") == 1


@pytest.mark.parametrize("stack", [{"shadow": {"max_in_flight": 1}}], indirect=True)
async def test_shadows_past_the_limit_are_dropped_and_counted(stack) -> None:
    pipeline, gen, _, client = stack
    for i in range(3):
        assert (await _post(client, _body(), **{"x-request-id": f"r{i}"})).status_code == 200
    assert pipeline.shadows.in_flight == 1  # the first holds the only slot; the other two were dropped
    gen.release.set()
    await asyncio.wait_for(pipeline.shadows.drain(), DEADLOCK_GUARD_S)
    assert [r["request_id"] for r in _audit(pipeline) if r["route"] == "shadow"] == ["r0-shadow"]
    text = (await client.get("/metrics")).text
    assert _metric(text, "finserve_shadow_requests_total", outcome="dropped") == 2
    assert _metric(text, "finserve_shadow_requests_total", outcome="compared") == 1


@pytest.mark.parametrize("stack", [{"shadow": {"busy_in_flight": 1}}], indirect=True)
async def test_no_shadow_starts_while_the_generator_is_busy_with_live_requests(stack) -> None:
    pipeline, gen, _, client = stack
    gen.release.set()
    held = asyncio.ensure_future(_post(client, _body("hold: my card has not arrived")))
    await asyncio.wait_for(gen.live_started.wait(), DEADLOCK_GUARD_S)  # one live generation in flight
    assert (await _post(client, _body(), **{"x-request-id": "while-busy"})).status_code == 200
    gen.release_live.set()
    assert (await held).status_code == 200  # finished with nothing else in flight: its shadow runs
    await asyncio.wait_for(pipeline.shadows.drain(), DEADLOCK_GUARD_S)
    shadows = [r["request_id"] for r in _audit(pipeline) if r["route"] == "shadow"]
    assert len(shadows) == 1 and shadows[0] != "while-busy-shadow"
    text = (await client.get("/metrics")).text
    assert _metric(text, "finserve_shadow_requests_total", outcome="dropped") == 1


@pytest.mark.parametrize("stack", [{"canary_fails": True}], indirect=True)
async def test_a_failed_shadow_is_counted_and_audited_never_raised(stack) -> None:
    pipeline, gen, _, client = stack
    resp = await _post(client, _body(), **{"x-request-id": "ok-1"})
    gen.release.set()
    await asyncio.wait_for(pipeline.shadows.drain(), DEADLOCK_GUARD_S)
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == STABLE_ANSWER
    live, shadow = _audit(pipeline)
    assert live["status"] == 200
    assert (shadow["request_id"], shadow["route"], shadow["status"], shadow["error"]) == (
        "ok-1-shadow",
        "shadow",
        503,
        "overloaded",
    )
    assert shadow["output"] is None
    text = (await client.get("/metrics")).text
    assert _metric(text, "finserve_shadow_requests_total", outcome="failed") == 1
    assert _metric(text, "finserve_shadow_answer_similarity_count") == 0


async def test_closing_the_pipeline_cancels_running_shadows(stack) -> None:
    pipeline, gen, _, client = stack
    assert (await _post(client, _body())).status_code == 200
    await asyncio.wait_for(gen.canary_started.wait(), DEADLOCK_GUARD_S)
    await asyncio.wait_for(pipeline.aclose(), DEADLOCK_GUARD_S)
    assert pipeline.shadows.in_flight == 0 and gen.canary_finished == 0
    assert [r["route"] for r in _audit(pipeline)] == ["stable"]  # no line for a shadow that never answered
    text = (await client.get("/metrics")).text
    assert _metric(text, "finserve_shadow_requests_total", outcome="dropped") == 1


async def test_requests_not_sent_to_stable_are_not_mirrored(stack) -> None:
    pipeline, gen, _, client = stack
    gen.release.set()
    resp = await _post(client, _body(), **{"x-finserve-adapter": str(STABLE)})
    assert resp.status_code == 200 and resp.json()["finserve"]["route"] == "override"
    assert pipeline.shadows.in_flight == 0 and not gen.canary_started.is_set()
    assert [r["route"] for r in _audit(pipeline)] == ["override"]


def _publish_lora(registry_dir: Path, work: Path, ref: AdapterRef) -> None:
    """A real PEFT LoRA (q_proj, v_proj, r=8, small random B) on SmolLM2: real adapter files, no training."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from finserve.contracts import AdapterManifest, AdapterRegistry
    from finserve.serving.inference.base_model import BASE_MODEL_ID, ensure_base_model

    base = AutoModelForCausalLM.from_pretrained(str(ensure_base_model()))
    model = get_peft_model(
        copy.deepcopy(base),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0),
    )
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.01)
    model.save_pretrained(str(work / "lora"))
    AdapterRegistry(registry_dir).publish(
        work / "lora",
        AdapterManifest(name=ref.name, version=ref.version, base_model=BASE_MODEL_ID, checksum=""),
    )


@pytest.mark.slow
async def test_the_real_model_answers_a_shadow_on_a_canary_lora(tmp_path: Path, small_index: Path) -> None:
    """Every stage real (SmolLM2 on the CPU engine, base stable, a LoRA canary): the client gets the base answer,
    the canary's answer is audited and compared."""
    from stack_config import stack_config

    from finserve.serving.local import build_local_stack
    from finserve.serving.paths import registry_root

    canary = AdapterRef(name="tiny", version="1.1.0")
    cfg = stack_config(tmp_path, small_index)
    _publish_lora(registry_root(cfg.generator.registry), tmp_path, canary)
    cfg.router = RouterConfig(
        routes={
            DEFAULT_MODEL: Route(
                base_model="b", stable=AdapterRef.base(), canary=canary, shadow_percent=100.0
            )
        }
    )
    stack = build_local_stack(cfg)
    await stack.start()
    try:
        req = ChatCompletionRequest(
            model=DEFAULT_MODEL,
            messages=[
                {"role": "user", "content": f"My new card {CARD} still has not arrived, what should I do?"}
            ],
        )
        out = await stack.pipeline.chat(req, RequestContext(request_id="real-1"))
        assert (out.finserve.adapter, out.finserve.route) == ("base@0.0.0", "stable")
        await asyncio.wait_for(stack.pipeline.shadows.drain(), 600)  # bounds a hang only
        live, shadow = _audit(stack.pipeline)
        assert live["output"] == out.choices[0].message.content  # what the client got is the stable answer
        assert (shadow["request_id"], shadow["route"], shadow["adapter"], shadow["status"]) == (
            "real-1-shadow",
            "shadow",
            str(canary),
            200,
        )
        assert shadow["output"] and CARD not in json.dumps(shadow)
        labels = {"model": DEFAULT_MODEL, "adapter": "tiny", "version": "1.1.0"}
        registry = stack.pipeline.metrics.registry
        assert (
            registry.get_sample_value("finserve_shadow_requests_total", {**labels, "outcome": "compared"})
            == 1
        )
        similarity = registry.get_sample_value("finserve_shadow_answer_similarity_sum", labels)
        assert 0.0 <= similarity <= 1.0
        assert registry.get_sample_value("finserve_requests_total", {**labels, "code": "200"}) is None
    finally:
        await stack.stop()
