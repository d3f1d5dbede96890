"""The classified intent's answer reaches the prompt even when retrieval's top answers missed it.

The guard (Presidio), router and audit log are the real ones; retrieval and the generator are scripted (a fake,
and why: which answers the real index ranks first for a question cannot be arranged without changing the index;
the pipeline's handling of a miss is what is tested here). The intent is the nearest examples' vote (the base
adapter has no head).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from generator_spy import GeneratorSpy
from scripted_stages import Generator, scripted_pipeline

from finserve.serving.config import DEFAULT_MODEL, ServingConfig
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.pipeline import RequestContext
from finserve.serving.retrieval import Hit, RetrievalResult, SearchFilters
from finserve.serving.schemas import ChatCompletionRequest
from finserve.serving.stages import LocalGuard

ANSWERS = {
    "card_arrival": "Cards arrive within 5 working days.",
    "lost_or_stolen_card": "Freeze a lost card in the app.",
    "activate_my_card": "Activate your card in the app.",
    "card_linking": "Link a card you already hold in the app.",
}


def _answer(intent: str, score: float) -> Hit:
    return Hit(
        id=f"answer:{intent}",
        text=ANSWERS[intent],
        intent=intent,
        kind="answer",
        tenant="default",
        score=score,
    )


class Retrieval:
    """Top answers of three other intents, nearest examples all of card_arrival (or, with ``hit``, its answer
    among the top ones); a search filtered to an intent returns that intent's answer. Records the filters."""

    def __init__(self, hit: bool = False, lookup_fails: bool = False) -> None:
        self.hit, self.lookup_fails = hit, lookup_fails
        self.filters: list[SearchFilters | None] = []

    async def search(self, masked_query: str, filters: SearchFilters | None = None) -> RetrievalResult:
        self.filters.append(filters)
        if filters is not None and filters.intent:
            if self.lookup_fails:
                raise TimeoutError("retrieval replica did not answer")
            hits = [_answer(filters.intent, 0.5)]
        else:
            first = "card_arrival" if self.hit else "card_linking"
            hits = [
                _answer("lost_or_stolen_card", 0.7),
                _answer("activate_my_card", 0.69),
                _answer(first, 0.68),
            ]
        examples = [
            Hit(
                id=f"ex:{i}",
                text="where is my card",
                intent="card_arrival",
                kind="example",
                tenant="default",
                score=0.9,
            )
            for i in range(3)
        ]
        return RetrievalResult(hits=hits, examples=examples, cache="off", index_version="idx-test-1")

    async def knowledge_texts(self) -> list[str]:
        return []


@pytest.fixture(scope="module")
def guard() -> LocalGuard:
    return LocalGuard(PIIGuard(ServingConfig().guard))


def _request() -> ChatCompletionRequest:
    text = "I live at 14 Queen Street, Edinburgh EH2 1JX. Where is my new card?"
    return ChatCompletionRequest(model=DEFAULT_MODEL, messages=[{"role": "user", "content": text}])


def _knowledge(spy: GeneratorSpy) -> str:
    [request] = spy.requests
    return request.messages[0].content.split("Knowledge:\n", 1)[1]


async def test_the_intents_answer_leads_when_retrieval_missed_it(tmp_path: Path, guard: LocalGuard) -> None:
    retrieval, spy = Retrieval(), GeneratorSpy(Generator())
    pipeline = scripted_pipeline(ServingConfig(), tmp_path, guard, generator=spy, retrieval=retrieval)  # type: ignore[arg-type]
    out = await pipeline.chat(_request(), RequestContext())
    assert out.finserve.intent == "card_arrival"
    knowledge = _knowledge(spy)
    # The intent's answer first, then retrieval's best two: the prompt keeps three entries.
    assert knowledge.startswith(f"[1] {ANSWERS['card_arrival']}")
    assert ANSWERS["lost_or_stolen_card"] in knowledge and ANSWERS["activate_my_card"] in knowledge
    assert ANSWERS["card_linking"] not in knowledge
    assert "answer:card_arrival" in out.finserve.citations
    # The second search asked for that intent only, with the masked question (no address reached retrieval).
    assert [f.intent if f else None for f in retrieval.filters] == [None, "card_arrival"]


async def test_no_second_search_when_retrieval_brought_the_intents_answer(
    tmp_path: Path, guard: LocalGuard
) -> None:
    retrieval, spy = Retrieval(hit=True), GeneratorSpy(Generator())
    pipeline = scripted_pipeline(ServingConfig(), tmp_path, guard, generator=spy, retrieval=retrieval)  # type: ignore[arg-type]
    await pipeline.chat(_request(), RequestContext())
    assert _knowledge(spy).startswith(f"[1] {ANSWERS['card_arrival']}")
    assert len(retrieval.filters) == 1


async def test_a_failed_lookup_leaves_the_prompt_retrieval_gave(tmp_path: Path, guard: LocalGuard) -> None:
    retrieval, spy = Retrieval(lookup_fails=True), GeneratorSpy(Generator())
    pipeline = scripted_pipeline(ServingConfig(), tmp_path, guard, generator=spy, retrieval=retrieval)  # type: ignore[arg-type]
    out = await pipeline.chat(_request(), RequestContext())
    assert out.choices[0].message.content  # answered, from the three entries retrieval brought
    knowledge = _knowledge(spy)
    assert (
        knowledge.startswith(f"[1] {ANSWERS['lost_or_stolen_card']}") and ANSWERS["card_linking"] in knowledge
    )
    assert len(retrieval.filters) == 2


async def test_the_training_prompt_gets_the_intents_answer_the_same_way(
    tmp_path: Path, guard: LocalGuard
) -> None:
    retrieval = Retrieval()
    pipeline = scripted_pipeline(ServingConfig(), tmp_path, guard, retrieval=retrieval)  # type: ignore[arg-type]
    messages = await pipeline.prompt_for("Where is my new card?", "card_arrival")
    assert messages[0].content.split("Knowledge:\n", 1)[1].startswith(f"[1] {ANSWERS['card_arrival']}")
