"""Retrieval vote: intent probabilities from the nearest training examples (weighted kNN).

Each neighbour votes for its intent with weight ``exp(score / temperature)``, so a close match
outweighs several distant ones. This is the whole classifier for ``AdapterRef.base()`` (no
adapter, no head) and a second opinion mixed into an adapter head's probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from finserve.contracts.evaluation import OUT_OF_SCOPE


class Example(Protocol):
    """What the vote needs from a retrieval hit (``finserve.serving.retrieval.Hit`` has it)."""

    intent: str
    score: float


def vote(examples: Sequence[Example], temperature: float) -> dict[str, float]:
    """intent -> probability over the intents the examples name; empty when there are none."""
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    # Off-topic examples say a question is not covered (the scope gate reads them), not which intent it is.
    examples = [e for e in examples if e.intent != OUT_OF_SCOPE]
    if not examples:
        return {}
    top = max(e.score for e in examples)
    # Subtracting the best score keeps exp() in range; it cancels out in the normalisation.
    weights: dict[str, float] = {}
    for e in examples:
        weights[e.intent] = weights.get(e.intent, 0.0) + math.exp((e.score - top) / temperature)
    total = sum(weights.values())
    return {intent: w / total for intent, w in weights.items()}


def mix(head: dict[str, float], votes: dict[str, float], weight: float) -> dict[str, float]:
    """``(1 - weight) * head + weight * votes``; with no votes the head's probabilities stand."""
    if not votes or weight <= 0:
        return dict(head)
    intents = head.keys() | votes.keys()
    return {i: (1 - weight) * head.get(i, 0.0) + weight * votes.get(i, 0.0) for i in intents}


def blend(head: Any, encoder: Any, vote_weight: float, encoder_weight: float) -> Any:
    """The LLM head and a version's encoder as one distribution for :func:`mix` with ``vote_weight``.

    The served rule is ``(1 - v - e) * head + e * encoder + v * vote``; :func:`mix` applies
    ``(1 - v) * x + v * vote``, so ``x`` is the head/encoder part divided by ``1 - v``. Works on
    anything with arithmetic (numpy arrays, torch tensors, floats).
    """
    if vote_weight + encoder_weight > 1.0 + 1e-9:
        raise ValueError(f"vote weight {vote_weight} + encoder weight {encoder_weight} exceed 1")
    if vote_weight >= 1.0:  # the vote alone decides; the head part is never read
        return head
    return ((1 - vote_weight - encoder_weight) * head + encoder_weight * encoder) / (1 - vote_weight)


def best(probabilities: dict[str, float]) -> tuple[str, float]:
    """The most probable intent and its probability; ties go to the alphabetically first intent."""
    if not probabilities:
        raise ValueError("no intent probabilities to choose from")
    label = min(probabilities, key=lambda i: (-probabilities[i], i))
    return label, probabilities[label]
