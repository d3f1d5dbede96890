"""The pipeline's critical path: the intent head runs beside retrieval, and the vote alone makes no hop.

The guard (Presidio), router and audit log are the real ones; retrieval, the head and the generator are
stand-ins that record what the pipeline asked of them and when, which is what these tests are about.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from finserve.contracts import AdapterRef, Route
from finserve.serving.audit import AuditLog, read_records
from finserve.serving.config import DEFAULT_MODEL, ServingConfig
from finserve.serving.errors import VectorStoreUnavailable
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.inference.types import GenerationRequest, GenerationResult
from finserve.serving.intent import HeadScores, decide
from finserve.serving.intent.scope import OUT_OF_SCOPE
from finserve.serving.pipeline import Pipeline, RequestContext
from finserve.serving.retrieval import Hit, RetrievalResult, SearchFilters
from finserve.serving.routing import Router, RouterConfig
from finserve.serving.schemas import ChatCompletionRequest
from finserve.serving.stages import LocalAudit, LocalGuard

ADAPTER = AdapterRef(name="banking77", version="1.0.0")
DEADLOCK_GUARD_S = 60  # only bounds a hang; the assertions are about order, not speed


def _hit(intent: str, score: float, kind: str = "example") -> Hit:
    return Hit(
        id=f"{kind}:{intent}:{score}",
        text=f"About {intent}.",
        intent=intent,
        kind=kind,
        tenant="default",
        score=score,
    )


EXAMPLES = [_hit("card_arrival", 0.9), _hit("lost_or_stolen_card", 0.8), _hit("lost_or_stolen_card", 0.79)]


class Retrieval:
    """Answers once ``release`` is set; remembers whether the head had started by then."""

    def __init__(
        self, release: asyncio.Event | None = None, fail: bool = False, examples: list[Hit] = EXAMPLES
    ) -> None:
        self.release, self.fail, self.examples = release, fail, examples
        self.calls = 0
        self.queries: list[str] = []

    async def search(self, masked_query: str, filters: SearchFilters | None = None) -> RetrievalResult:
        self.calls += 1
        self.queries.append(masked_query)
        if self.release is not None:
            await self.release.wait()
        if self.fail:
            raise VectorStoreUnavailable("Milvus unavailable", 2.0)
        return RetrievalResult(
            hits=[_hit("card_arrival", 0.7, "answer")],
            examples=self.examples,
            cache="off",
            index_version="v1",
        )


class Head:
    """The generator replica's head: sets ``started`` when called, answers once ``release`` is set."""

    def __init__(self, started: asyncio.Event | None = None, release: asyncio.Event | None = None) -> None:
        self.started, self.release = started, release
        self.calls: list[tuple[str, AdapterRef]] = []
        self.cancelled = False

    async def head_scores(self, masked_text: str, adapter: AdapterRef) -> HeadScores | None:
        self.calls.append((masked_text, adapter))
        if self.started is not None:
            self.started.set()
        try:
            if self.release is not None:
                await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return HeadScores(
            probabilities={"lost_or_stolen_card": 0.7, "card_arrival": 0.3},
            retrieval_weight=0.2,
            vote_temperature=0.05,
        )


class Generator:
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return GenerationResult(
            text="Your card is on its way.",
            prompt_tokens=10,
            completion_tokens=6,
            finish_reason="stop",
            adapter=request.adapter,
        )

    async def stream(self, request: GenerationRequest):  # noqa: ANN201 - not used here
        raise NotImplementedError


@pytest.fixture(scope="module")
def guard() -> LocalGuard:
    cfg = ServingConfig()
    return LocalGuard(PIIGuard(cfg.guard))


def _pipeline(
    tmp_path: Path, guard: LocalGuard, retrieval: Retrieval, head: Head, adapter: AdapterRef
) -> Pipeline:
    cfg = ServingConfig()
    cfg.audit = cfg.audit.model_copy(update={"path": tmp_path / "audit.jsonl"})
    router = Router(RouterConfig(routes={DEFAULT_MODEL: Route(base_model="b", stable=adapter)}))
    return Pipeline(
        cfg,
        guard=guard,
        retrieval=retrieval,
        intent=head,
        generator=Generator(),
        audit=LocalAudit(AuditLog(cfg.audit)),
        router=router,
    )


def _request(text: str = "Where is my card?") -> ChatCompletionRequest:
    return ChatCompletionRequest(model=DEFAULT_MODEL, messages=[{"role": "user", "content": text}])


def _audit(tmp_path: Path) -> list[dict]:
    return list(read_records(tmp_path / "audit.jsonl"))


async def test_the_head_starts_before_retrieval_answers(tmp_path: Path, guard: LocalGuard) -> None:
    started = asyncio.Event()
    # Retrieval answers only once the head has been called: a pipeline that waited for retrieval
    # before calling the head would never get there.
    retrieval, head = Retrieval(release=started), Head(started=started)
    pipeline = _pipeline(tmp_path, guard, retrieval, head, ADAPTER)
    out = await asyncio.wait_for(
        pipeline.chat(_request("Where is my card 4111 1111 1111 1111?"), RequestContext()), DEADLOCK_GUARD_S
    )
    [(masked, adapter)] = head.calls
    assert adapter == ADAPTER and "4111" not in masked  # the head sees the masked query only
    expected = decide(await head.head_scores(masked, adapter), EXAMPLES, 0.05)
    assert (out.finserve.intent, out.finserve.intent_confidence) == (
        expected.label,
        round(expected.confidence, 4),
    )
    assert out.finserve.intent == "lost_or_stolen_card"  # the head's choice outweighs the vote's here
    assert _audit(tmp_path)[0]["intent"] == "lost_or_stolen_card"


async def test_the_base_adapter_makes_no_head_call(tmp_path: Path, guard: LocalGuard) -> None:
    retrieval, head = Retrieval(), Head()
    out = await _pipeline(tmp_path, guard, retrieval, head, AdapterRef.base()).chat(
        _request(), RequestContext()
    )
    assert head.calls == []
    assert out.finserve.intent == "card_arrival"  # the retrieval vote: the nearest example wins at t=0.05


async def test_a_failed_retrieval_cancels_the_head_and_is_audited(tmp_path: Path, guard: LocalGuard) -> None:
    started, never = asyncio.Event(), asyncio.Event()
    retrieval, head = Retrieval(release=started, fail=True), Head(started=started, release=never)
    pipeline = _pipeline(tmp_path, guard, retrieval, head, ADAPTER)
    with pytest.raises(VectorStoreUnavailable):
        await asyncio.wait_for(pipeline.chat(_request(), RequestContext()), DEADLOCK_GUARD_S)
    assert head.cancelled  # not left running after the request failed
    [record] = _audit(tmp_path)
    assert record["status"] == 503 and record["intent"] is None


async def test_classify_runs_the_same_overlap(tmp_path: Path, guard: LocalGuard) -> None:
    started = asyncio.Event()
    retrieval, head = Retrieval(release=started), Head(started=started)
    outcome = await asyncio.wait_for(
        _pipeline(tmp_path, guard, retrieval, head, ADAPTER).classify("Where is my card?", ADAPTER),
        DEADLOCK_GUARD_S,
    )
    assert outcome.intent.method == "head+vote" and outcome.intent.label == "lost_or_stolen_card"
    assert len(head.calls) == 1 and retrieval.calls == 1


async def test_a_turned_away_question_does_not_wait_for_the_head(tmp_path: Path, guard: LocalGuard) -> None:
    # The nearest indexed example is a listed off-topic question: the reply is decided by retrieval alone, so a
    # head that never answers must neither hold the reply back nor be left running.
    started, never = asyncio.Event(), asyncio.Event()
    off_topic = [_hit(OUT_OF_SCOPE, 0.9), _hit("card_arrival", 0.6)]
    retrieval, head = Retrieval(release=started, examples=off_topic), Head(started=started, release=never)
    pipeline = _pipeline(tmp_path, guard, retrieval, head, ADAPTER)
    out = await asyncio.wait_for(
        pipeline.chat(_request("What's the weather?"), RequestContext()), DEADLOCK_GUARD_S
    )
    assert out.finserve.intent == OUT_OF_SCOPE
    assert out.choices[0].message.content == pipeline.config.intent.scope.answer
    assert started.is_set() and head.cancelled  # started beside retrieval, then dropped
    # An off-topic question says nothing about the version's intents: no agreement sample either way.
    samples = [
        sample
        for family in pipeline.metrics.registry.collect()
        for sample in family.samples
        if sample.name == "finserve_intent_agreement_total"
    ]
    assert samples == []
    assert _audit(tmp_path)[0]["intent"] == OUT_OF_SCOPE


@pytest.mark.parametrize(("focus_query", "searched"), [(True, "Where is my card?"), (False, None)])
async def test_the_question_is_searched_without_greeting_and_introduction(
    tmp_path: Path, guard: LocalGuard, focus_query: bool, searched: str | None
) -> None:
    retrieval, head = Retrieval(), Head()
    pipeline = _pipeline(tmp_path, guard, retrieval, head, ADAPTER)
    pipeline.config.retrieval = pipeline.config.retrieval.model_copy(update={"focus_query": focus_query})
    text = "Hello, Priya Sharma here. Where is my card?"
    await pipeline.chat(_request(text), RequestContext())
    masked = "Hello, <PERSON> here. Where is my card?"
    # Every search (the question's, and the lookup of the head's intent's answer when retrieval missed it) and the
    # head read the same text.
    assert set(retrieval.queries) == {searched or masked} and [q for q, _ in head.calls] == [
        searched or masked
    ]
    assert _audit(tmp_path)[0]["input"] == masked  # the record and the prompt keep the whole message
