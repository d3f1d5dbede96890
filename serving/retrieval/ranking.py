"""Answer ranking: an answer is as relevant as the closer of itself and its intent's nearest example.

Customers phrase questions the way the Banking77 examples do, not the way an answer is written, so the
nearest examples are a better signal than the answer text alone: on the held-out split, top-1 answer
intent goes from 61 % (answer similarity) to 90 % (this fusion); see docs/retrieval.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from finserve.contracts.evaluation import OUT_OF_SCOPE

from .types import Hit


def intents_to_fetch(direct_answers: Iterable[Hit], examples: Iterable[Hit]) -> list[str]:
    """Intents among the nearest examples whose answer the direct answer search did not return (off-topic
    examples have none to fetch)."""
    have = {h.intent for h in direct_answers} | {OUT_OF_SCOPE}
    out: list[str] = []
    for example in examples:
        if example.intent not in have and example.intent not in out:
            out.append(example.intent)
    return out


def fuse_answers(answers: Iterable[Hit], examples: Iterable[Hit], top_k: int) -> list[Hit]:
    """``top_k`` answers by max(answer similarity, best example similarity of its intent), best first.

    Exact as long as ``answers`` holds the top_k answers by their own similarity plus the answers of every
    intent among ``examples``: any other answer scores below all of those.
    """
    best_example: dict[str, float] = {}
    for example in examples:
        best_example[example.intent] = max(best_example.get(example.intent, -1.0), example.score)
    by_intent: dict[str, Hit] = {}
    for answer in answers:
        score = max(answer.score, best_example.get(answer.intent, -1.0))
        if answer.intent not in by_intent or score > by_intent[answer.intent].score:
            by_intent[answer.intent] = answer.model_copy(update={"score": score})
    ranked = sorted(by_intent.values(), key=lambda h: (-h.score, h.intent))
    return ranked[:top_k]
