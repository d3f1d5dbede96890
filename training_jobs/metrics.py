"""Classification metrics as pure functions of (gold, predicted) label lists.

Used by the trainer's per-epoch validation and by ``finserve eval``; no model, no I/O, so the math
is tested on hand-made predictions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import Field

from finserve.contracts import StrictModel


class IntentScores(StrictModel):
    """Precision, recall and F1 of one intent (one-vs-rest)."""

    intent: str = Field(description="The intent label.")
    precision: float = Field(
        description="Correct predictions of this intent / all predictions of it (0 if none)."
    )
    recall: float = Field(description="Correct predictions of this intent / gold rows of it.")
    f1: float = Field(description="Harmonic mean of precision and recall (0 when both are 0).")
    support: int = Field(description="Gold rows of this intent.")


class ConfusedPair(StrictModel):
    """How often one gold intent was predicted as another."""

    gold: str = Field(description="The true intent.")
    predicted: str = Field(description="The intent predicted instead.")
    count: int = Field(description="Rows with this (gold, predicted) pair.")


class ClassificationReport(StrictModel):
    """Everything ``finserve eval`` prints, in one JSON-ready object."""

    n: int = Field(description="Rows evaluated.")
    accuracy: float = Field(description="Fraction of rows whose predicted intent equals the gold intent.")
    macro_f1: float = Field(description="Unweighted mean of the per-intent F1 over the gold intents.")
    per_intent: list[IntentScores] = Field(description="One entry per gold intent, sorted by name.")
    confused: list[ConfusedPair] = Field(
        description="Most frequent wrong (gold, predicted) pairs, most first."
    )


def _safe_div(num: float, den: float) -> float:
    return num / den if den else 0.0


def accuracy(gold: Sequence[str], predicted: Sequence[str]) -> float:
    _check(gold, predicted)
    return _safe_div(sum(g == p for g, p in zip(gold, predicted, strict=True)), len(gold))


def per_intent_scores(gold: Sequence[str], predicted: Sequence[str]) -> list[IntentScores]:
    """One-vs-rest scores for every intent present in ``gold``.

    Intents that only occur as predictions still cost precision elsewhere (their rows are wrong
    for some gold intent's recall) but get no entry of their own: macro averages run over the
    label set of the data, as scikit-learn does with ``labels=sorted(set(gold))``.
    """
    _check(gold, predicted)
    true_pos: Counter[str] = Counter()
    predicted_count: Counter[str] = Counter(predicted)
    support: Counter[str] = Counter(gold)
    for g, p in zip(gold, predicted, strict=True):
        if g == p:
            true_pos[g] += 1
    out = []
    for intent in sorted(support):
        precision = _safe_div(true_pos[intent], predicted_count[intent])
        recall = _safe_div(true_pos[intent], support[intent])
        f1 = _safe_div(2 * precision * recall, precision + recall)
        out.append(
            IntentScores(intent=intent, precision=precision, recall=recall, f1=f1, support=support[intent])
        )
    return out


def macro_f1(gold: Sequence[str], predicted: Sequence[str]) -> float:
    scores = per_intent_scores(gold, predicted)
    return _safe_div(sum(s.f1 for s in scores), len(scores))


def most_confused(gold: Sequence[str], predicted: Sequence[str], top: int = 10) -> list[ConfusedPair]:
    """The ``top`` most frequent wrong pairs; ties broken by name so the order is reproducible."""
    _check(gold, predicted)
    pairs = Counter((g, p) for g, p in zip(gold, predicted, strict=True) if g != p)
    ranked = sorted(pairs.items(), key=lambda item: (-item[1], item[0]))
    return [ConfusedPair(gold=g, predicted=p, count=n) for (g, p), n in ranked[:top]]


def classification_report(
    gold: Sequence[str], predicted: Sequence[str], top_confused: int = 10
) -> ClassificationReport:
    scores = per_intent_scores(gold, predicted)
    return ClassificationReport(
        n=len(gold),
        accuracy=accuracy(gold, predicted),
        macro_f1=_safe_div(sum(s.f1 for s in scores), len(scores)),
        per_intent=scores,
        confused=most_confused(gold, predicted, top_confused),
    )


def _check(gold: Sequence[str], predicted: Sequence[str]) -> None:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    if not gold:
        raise ValueError("no rows to score")
