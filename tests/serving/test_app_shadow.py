"""Shadow traffic in the Ray Serve gateway: the canary answers through the Generator handle, the answers are
compared with the Retriever deployment's embedder, and stopping the replica cancels running shadows. The
Gateway class is built here without Ray; its handles are stand-ins with ``.remote`` (no Ray cluster runs)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fake_handles import FakeHandle

from finserve.contracts import AdapterRef, Route
from finserve.serving.app import Gateway
from finserve.serving.config import DEFAULT_MODEL, ServingConfig
from finserve.serving.inference.types import GenerationRequest, GenerationResult
from finserve.serving.pipeline import RequestContext
from finserve.serving.retrieval import Embedder, Hit, RetrievalResult
from finserve.serving.routing import RouterConfig
from finserve.serving.schemas import ChatCompletionRequest

STABLE = AdapterRef(name="banking77", version="1.0.0")
CANARY = AdapterRef(name="banking77", version="1.1.0")
DEADLOCK_GUARD_S = 60  # only bounds a hang
pytestmark = pytest.mark.filterwarnings("ignore:coroutine .*ASGIIngressWrapper.__del__:RuntimeWarning")


async def _search(query: str, filters: Any = None) -> RetrievalResult:
    hit = Hit(
        id="answer:card_arrival",
        text="Cards arrive in 3-5 days.",
        intent="card_arrival",
        kind="answer",
        tenant="default",
        score=0.8,
    )
    return RetrievalResult(
        hits=[hit], examples=[hit.model_copy(update={"kind": "example"})], cache="off", index_version="v1"
    )


async def _no_head(text: str, adapter: AdapterRef) -> None:
    return None


class _Generator:
    def __init__(self) -> None:
        self.canary_started, self.release = asyncio.Event(), asyncio.Event()

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if request.adapter == CANARY:
            self.canary_started.set()
            await self.release.wait()
        text = "Cards usually arrive in a few days." if request.adapter == CANARY else "It is on its way."
        return GenerationResult(
            text=text, prompt_tokens=5, completion_tokens=5, finish_reason="stop", adapter=request.adapter
        )


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


async def _gateway(tmp_path: Path, gen: _Generator, embedder: Embedder) -> Gateway:
    cfg = ServingConfig()
    cfg.audit = cfg.audit.model_copy(update={"path": tmp_path / "audit.jsonl"})
    cfg.router = RouterConfig(
        routes={DEFAULT_MODEL: Route(base_model="b", stable=STABLE, canary=CANARY, shadow_percent=100.0)}
    )

    async def embed_texts(
        texts: list[str],
    ) -> list[list[float]]:  # what RetrieverDeployment.embed_texts returns
        return embedder.embed(texts).tolist()

    gateway = Gateway.__new__(
        Gateway
    )  # as a replica builds it: the ingress wrapper's __init__ is a coroutine
    await gateway.__init__(
        cfg.model_dump(mode="json"),
        None,
        FakeHandle(search=_search, embed_texts=embed_texts),
        FakeHandle(generate=gen.generate, head_scores=_no_head),
        None,
    )
    return gateway


def _request() -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model=DEFAULT_MODEL, messages=[{"role": "user", "content": "Where is my card?"}]
    )


def _audit(tmp_path: Path) -> list[dict]:
    from finserve.serving.audit import read_records

    return list(read_records(tmp_path / "audit.jsonl"))


async def test_a_shadow_runs_through_the_handles_and_is_audited(tmp_path: Path, embedder: Embedder) -> None:
    gen = _Generator()
    gateway = await _gateway(tmp_path, gen, embedder)
    out = await gateway.pipeline.chat(_request(), RequestContext(request_id="r1"))
    assert out.choices[0].message.content == "It is on its way." and out.finserve.adapter == str(STABLE)
    gen.release.set()
    await asyncio.wait_for(gateway.pipeline.shadows.drain(), DEADLOCK_GUARD_S)
    live, shadow = _audit(tmp_path)
    assert (shadow["request_id"], shadow["route"], shadow["adapter"]) == ("r1-shadow", "shadow", str(CANARY))
    assert shadow["output"] == "Cards usually arrive in a few days."
    similarity = gateway.pipeline.metrics.registry.get_sample_value(
        "finserve_shadow_answer_similarity_count",
        {"model": DEFAULT_MODEL, "adapter": "banking77", "version": "1.1.0"},
    )
    assert similarity == 1


async def test_stopping_the_replica_cancels_running_shadows(tmp_path: Path, embedder: Embedder) -> None:
    gen = _Generator()
    gateway = await _gateway(tmp_path, gen, embedder)
    await gateway.pipeline.chat(_request(), RequestContext())
    await asyncio.wait_for(gen.canary_started.wait(), DEADLOCK_GUARD_S)
    assert gateway.pipeline.shadows.in_flight == 1
    await asyncio.wait_for(
        gateway.__del__(), DEADLOCK_GUARD_S
    )  # what Ray Serve awaits when the replica stops
    assert gateway.pipeline.shadows.in_flight == 0
    assert [r["route"] for r in _audit(tmp_path)] == ["stable"]
