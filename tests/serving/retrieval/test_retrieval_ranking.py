"""Answer fusion: answers ranked by the closer of their own text and their intent's nearest example."""

from __future__ import annotations

from finserve.serving.retrieval.ranking import fuse_answers, intents_to_fetch
from finserve.serving.retrieval.types import Hit


def hit(intent: str, kind: str, score: float, n: int = 0) -> Hit:
    return Hit(
        id=f"{kind}:{intent}:{n}",
        text=f"{kind} {intent}",
        intent=intent,
        kind=kind,
        score=score,
        tenant="default",
    )


def test_intents_to_fetch_lists_example_intents_without_a_direct_answer_in_order() -> None:
    direct = [hit("a", "answer", 0.7), hit("b", "answer", 0.6)]
    examples = [
        hit("c", "example", 0.9),
        hit("a", "example", 0.8),
        hit("d", "example", 0.7, 1),
        hit("c", "example", 0.6, 2),
    ]
    assert intents_to_fetch(direct, examples) == ["c", "d"]
    assert intents_to_fetch(direct, []) == []


def test_an_answer_inherits_its_best_example_score() -> None:
    answers = [hit("a", "answer", 0.60), hit("b", "answer", 0.55), hit("c", "answer", 0.30)]
    examples = [hit("c", "example", 0.92), hit("c", "example", 0.85, 1), hit("b", "example", 0.50)]
    fused = fuse_answers(answers, examples, top_k=2)
    assert [(h.intent, h.score) for h in fused] == [("c", 0.92), ("a", 0.60)]
    assert fused[0].text == "answer c" and fused[0].kind == "answer"
    assert answers[2].score == 0.30  # inputs are not modified


def test_without_examples_answers_keep_their_own_order() -> None:
    answers = [hit("b", "answer", 0.4), hit("a", "answer", 0.4), hit("c", "answer", 0.9)]
    assert [h.intent for h in fuse_answers(answers, [], top_k=3)] == ["c", "a", "b"]


def test_off_topic_examples_fetch_no_answer_and_rank_none() -> None:
    direct = [hit("a", "answer", 0.5)]
    examples = [hit("out_of_scope", "example", 0.95), hit("b", "example", 0.6)]
    assert intents_to_fetch(direct, examples) == ["b"]
    ranked = fuse_answers([*direct, hit("b", "answer", 0.3)], examples, top_k=3)
    assert [(h.intent, h.score) for h in ranked] == [("b", 0.6), ("a", 0.5)]
