"""finserve_intent_agreement_total compares two independent opinions: the version's own intent (its head, before
the retrieval vote is mixed in) and the retrieval vote. The served intent contains the vote, so comparing it
with the vote would grade a version partly against itself.

Real: the guard (Presidio), router, audit log and metrics. Stand-ins: retrieval and the head, so the vote and the
head's opinion are set exactly where they disagree; the generator, since no answer text is under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from finserve.contracts import AdapterRef, Route
from finserve.serving.audit.log import AuditLog
from finserve.serving.config import DEFAULT_MODEL, ServingConfig
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.inference.types import GenerationRequest, GenerationResult
from finserve.serving.intent import HeadScores, own_opinion
from finserve.serving.pipeline import Pipeline, RequestContext
from finserve.serving.retrieval import Hit, RetrievalResult, SearchFilters
from finserve.serving.routing import Router, RouterConfig
from finserve.serving.schemas import ChatCompletionRequest
from finserve.serving.stages import LocalAudit, LocalGuard

VERSION = AdapterRef(name="banking77", version="1.0.0")
# The nearest examples all say card_arrival: that is the retrieval vote.
EXAMPLES = [
    Hit(id=f"example:{i}", text="", intent="card_arrival", kind="example", tenant="default", score=0.9)
    for i in range(3)
]


def _head(probabilities: dict[str, float], retrieval_weight: float) -> HeadScores:
    return HeadScores(probabilities=probabilities, retrieval_weight=retrieval_weight, vote_temperature=0.05)


class Retrieval:
    async def search(self, masked_query: str, filters: SearchFilters | None = None) -> RetrievalResult:
        return RetrievalResult(hits=[], examples=EXAMPLES, cache="off", index_version="v1")


class Head:
    def __init__(self, scores: HeadScores | None) -> None:
        self.scores = scores

    async def head_scores(self, masked_text: str, adapter: AdapterRef) -> HeadScores | None:
        return self.scores


class Generator:
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return GenerationResult(
            text="It is on its way.",
            prompt_tokens=5,
            completion_tokens=5,
            finish_reason="stop",
            adapter=request.adapter,
        )


@pytest.fixture(scope="module")
def guard() -> LocalGuard:
    return LocalGuard(PIIGuard(ServingConfig().guard))


async def _agreement(
    tmp_path: Path,
    guard: LocalGuard,
    adapter: AdapterRef,
    head: HeadScores | None,
) -> tuple[str, dict[str, float]]:
    """(served intent, agree -> count) after one request."""
    cfg = ServingConfig()
    cfg.audit = cfg.audit.model_copy(update={"path": tmp_path / "audit.jsonl"})
    router = Router(RouterConfig(routes={DEFAULT_MODEL: Route(base_model="b", stable=adapter)}))
    pipeline = Pipeline(
        cfg,
        guard=guard,
        retrieval=Retrieval(),
        intent=Head(head),
        generator=Generator(),
        audit=LocalAudit(AuditLog(cfg.audit)),
        router=router,
    )
    req = ChatCompletionRequest(
        model=DEFAULT_MODEL, messages=[{"role": "user", "content": "Where is my card?"}]
    )
    out = await pipeline.chat(req, RequestContext())
    counts = {
        s.labels["agree"]: s.value
        for family in text_string_to_metric_families(generate_latest(pipeline.metrics.registry).decode())
        for s in family.samples
        if s.name == "finserve_intent_agreement_total"
    }
    return out.finserve.intent, counts


async def test_a_head_outvoted_by_the_vote_counts_as_disagreement(tmp_path: Path, guard: LocalGuard) -> None:
    # The head says lost_or_stolen_card; the vote, weighted 0.6, makes the served intent card_arrival.
    served, counts = await _agreement(
        tmp_path, guard, VERSION, _head({"lost_or_stolen_card": 0.8, "card_arrival": 0.2}, 0.6)
    )
    assert served == "card_arrival"  # comparing this with the vote would have said "agree"
    assert counts == {"false": 1.0}


async def test_a_head_that_agrees_with_the_vote_counts_as_agreement(
    tmp_path: Path, guard: LocalGuard
) -> None:
    served, counts = await _agreement(
        tmp_path, guard, VERSION, _head({"card_arrival": 0.7, "exchange_rate": 0.3}, 0.2)
    )
    assert served == "card_arrival" and counts == {"true": 1.0}


async def test_a_version_without_a_head_is_not_counted(tmp_path: Path, guard: LocalGuard) -> None:
    served, counts = await _agreement(tmp_path, guard, AdapterRef.base(), None)
    assert served == "card_arrival"  # the vote alone: nothing independent to compare it with
    assert counts == {}


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("no head: no opinion", None, None),
        ("empty probabilities: no opinion", _head({}, 0.2), None),
        ("the head's best, whatever its vote weight", _head({"a": 0.6, "b": 0.4}, 0.9), "a"),
        ("ties go to the alphabetically first", _head({"b": 0.5, "a": 0.5}, 0.0), "a"),
    ],
)
def test_own_opinion(name, head, expected):
    assert own_opinion(head) == expected, name
