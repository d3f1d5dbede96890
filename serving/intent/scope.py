"""Whether a question is one the bank's knowledge covers at all: the out-of-scope gate.

Every question used to get the answer of its nearest intent, so "what is your mortgage rate?" was told about
exchange rates and "what's the weather tomorrow?" about card delivery, fluently and wrongly. The evidence that a
question is covered is how close it comes to any question the knowledge base was built from: in-scope questions
sit near one (cosine of the MiniLM embeddings), off-topic ones do not; and whether the nearest indexed question
is one of the off-topic questions the bank listed (retrieval's ``off_topic_path``, indexed as examples of
``out_of_scope``), which catches neighbouring banking products the knowledge does not cover. Then the pipeline
answers with the configured reply instead of generating (docs/serving.md, "Questions the knowledge does not
cover"; bench_scope measures the threshold). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from finserve.contracts import StrictModel
from finserve.contracts.evaluation import OUT_OF_SCOPE

from .vote import Example

__all__ = [
    "DEFAULT_SCOPE_ANSWER",
    "OUT_OF_SCOPE",
    "ScopeConfig",
    "nearest_similarity",
    "needs_context",
    "out_of_scope",
]

DEFAULT_SCOPE_ANSWER = (
    "I can help with your account, cards, payments, transfers, top-ups, currency exchange and identity checks: "
    "please tell me what you need with one of those. For anything else I'll pass your question to a colleague, "
    "or you can contact our support team from the app."
)
"""Worded for greetings ("Hello", "Can you help me?") as well as off-topic questions: both are turned away."""


class ScopeConfig(StrictModel):
    """The out-of-scope gate: a question whose nearest retrieved example is an off-topic one, or less similar than
    ``min_similarity``, is not answered by the model."""

    enabled: bool = Field(True, description="Answer off-topic questions with `answer` instead of generating.")
    min_similarity: float = Field(
        0.55,
        ge=-1.0,
        le=1.0,
        description="Cosine of the query to its nearest retrieved example below which the question is out of "
        "scope. It belongs to the embedder: 0.55 for all-MiniLM-L6-v2 (bench_scope: 0.15 % of held-out "
        "Banking77 questions turned away; with the shipped off-topic list 80 % of unseen off-topic ones caught).",
    )
    answer: str = Field(
        DEFAULT_SCOPE_ANSWER,
        min_length=1,
        max_length=2000,
        description="The reply to an out-of-scope question (the bank's own words; guarded like any answer).",
    )


def nearest_similarity(examples: Sequence[Example]) -> float | None:
    """The best score among the retrieved in-scope examples (off-topic ones left out); None when there were
    none."""
    return max((e.score for e in examples if e.intent != OUT_OF_SCOPE), default=None)


def _nearest(examples: Sequence[Example], config: ScopeConfig) -> Example | None:
    """The nearest retrieved example when the gate is on; None when it is off or nothing was retrieved (no
    evidence either way: the examples search may be off, or Milvus down and only the answers in memory searched,
    and the question is then answered as before)."""
    if not config.enabled or not examples:
        return None
    return max(examples, key=lambda e: e.score)


def out_of_scope(examples: Sequence[Example], config: ScopeConfig) -> bool:
    """True when the gate is on and the nearest example is an off-topic one, or less similar than the threshold."""
    nearest = _nearest(examples, config)
    return nearest is not None and (nearest.intent == OUT_OF_SCOPE or nearest.score < config.min_similarity)


def needs_context(examples: Sequence[Example], config: ScopeConfig) -> bool:
    """True when the question would be turned away only for being far from everything: its nearest example is an
    in-scope one below the threshold. In a conversation that may be a follow-up ("is that free?") which the
    previous message explains; a question nearest to a listed off-topic one is turned away whatever came before.
    """
    nearest = _nearest(examples, config)
    return nearest is not None and nearest.intent != OUT_OF_SCOPE and nearest.score < config.min_similarity
