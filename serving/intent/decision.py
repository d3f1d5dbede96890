"""The intent decision, apart from the models that score it: a head's scores mixed with the retrieval vote.

The pipeline, the shadow comparison and the stages decide with these; only the Generator replica, which runs
the heads and encoders, imports :mod:`classifier` and torch with it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from finserve.contracts import AdapterRef, StrictModel

from . import vote
from .config import IntentConfig

UNKNOWN = "unknown"
"""Label when there is nothing to decide on (base adapter and no retrieved examples)."""


class IntentPrediction(StrictModel):
    """The intent the pipeline attributes to one query."""

    label: str = Field(
        description=f"A Banking77 intent ('{UNKNOWN}' only when there was no evidence at all; 'out_of_scope' when "
        "the scope gate turned the question away, serving/intent/scope.py)."
    )
    confidence: float = Field(ge=0.0, le=1.0, description="Probability of the label under the method used.")
    method: str = Field(
        description="head, head+vote (head mixed with the retrieval vote), head+encoder(+vote) (with the version's "
        "fine-tuned encoder), vote, or scope (turned away as out of scope)."
    )


class HeadScores(StrictModel):
    """An adapter head's intent probabilities for one query, and how its spec mixes in the retrieval vote."""

    probabilities: dict[str, float] = Field(description="Intent -> probability under the head.")
    retrieval_weight: float = Field(ge=0.0, le=1.0, description="Weight of the retrieval vote in the mix.")
    vote_temperature: float = Field(gt=0.0, description="Softmax temperature of the vote.")
    encoder: bool = Field(
        False, description="The probabilities already blend in the version's fine-tuned encoder."
    )


def wants_head(config: IntentConfig, adapter: AdapterRef) -> bool:
    """Whether ``adapter`` is classified by a head at all (else the retrieval vote alone decides)."""
    return config.method != "vote" and not adapter.is_base


def decide(
    head: HeadScores | None, examples: Sequence[vote.Example], vote_temperature: float
) -> IntentPrediction:
    """The served intent: the head mixed with the retrieval vote, or the vote alone when there is no head."""
    if head is None:
        votes = vote.vote(examples, vote_temperature)
        if not votes:
            return IntentPrediction(label=UNKNOWN, confidence=0.0, method="vote")
        label, confidence = vote.best(votes)
        return IntentPrediction(label=label, confidence=min(1.0, confidence), method="vote")
    votes = vote.vote(examples, head.vote_temperature) if head.retrieval_weight > 0 else {}
    label, confidence = vote.best(vote.mix(head.probabilities, votes, head.retrieval_weight))
    method = "head+encoder" if head.encoder else "head"
    return IntentPrediction(
        label=label, confidence=min(1.0, confidence), method=f"{method}+vote" if votes else method
    )


def own_opinion(head: HeadScores | None) -> str | None:
    """The version's own intent, before the retrieval vote is mixed in: its head (blended with its fine-tuned
    encoder when it has one). None when it has no head (the base version): the vote is then all there is, and
    comparing the vote with itself would measure nothing."""
    if head is None or not head.probabilities:
        return None
    return vote.best(head.probabilities)[0]
