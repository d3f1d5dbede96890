"""Metric math on hand-made predictions, checked against hand-computed values and scikit-learn."""

from __future__ import annotations

import pytest
from sklearn.metrics import f1_score, precision_recall_fscore_support

from finserve.training.metrics import (
    accuracy,
    classification_report,
    macro_f1,
    most_confused,
    per_intent_scores,
)

GOLD = ["a", "a", "a", "b", "b", "c", "c", "c"]
PRED = ["a", "b", "a", "b", "c", "c", "a", "c"]


def test_accuracy_counts_exact_matches() -> None:
    assert accuracy(GOLD, PRED) == pytest.approx(5 / 8)
    assert accuracy(["x"], ["x"]) == 1.0
    assert accuracy(["x", "y"], ["y", "x"]) == 0.0


def test_per_intent_scores_match_hand_computation() -> None:
    scores = {s.intent: s for s in per_intent_scores(GOLD, PRED)}
    # a: predicted 3 times (2 right), 3 gold rows
    assert scores["a"].precision == pytest.approx(2 / 3)
    assert scores["a"].recall == pytest.approx(2 / 3)
    # b: predicted twice (1 right), 2 gold rows
    assert scores["b"].precision == pytest.approx(1 / 2)
    assert scores["b"].recall == pytest.approx(1 / 2)
    # c: predicted 3 times (2 right), 3 gold rows
    assert scores["c"].f1 == pytest.approx(2 / 3)
    assert [s.support for s in per_intent_scores(GOLD, PRED)] == [3, 2, 3]


def test_macro_f1_and_per_intent_agree_with_sklearn() -> None:
    labels = sorted(set(GOLD))
    assert macro_f1(GOLD, PRED) == pytest.approx(f1_score(GOLD, PRED, labels=labels, average="macro"))
    p, r, f, s = precision_recall_fscore_support(GOLD, PRED, labels=labels, zero_division=0)
    ours = per_intent_scores(GOLD, PRED)
    assert [x.precision for x in ours] == pytest.approx(list(p))
    assert [x.recall for x in ours] == pytest.approx(list(r))
    assert [x.f1 for x in ours] == pytest.approx(list(f))


def test_labels_only_predicted_do_not_enter_the_macro_average() -> None:
    gold, pred = ["a", "a", "b"], ["a", "zz", "b"]
    # a: p=1, r=1/2, f1=2/3; b: p=r=f1=1; "zz" appears only as a prediction.
    assert macro_f1(gold, pred) == pytest.approx((2 / 3 + 1) / 2)
    assert [s.intent for s in per_intent_scores(gold, pred)] == ["a", "b"]


def test_an_intent_never_predicted_has_zero_precision_not_an_error() -> None:
    scores = {s.intent: s for s in per_intent_scores(["a", "b"], ["a", "a"])}
    assert scores["b"].precision == 0.0 and scores["b"].recall == 0.0 and scores["b"].f1 == 0.0


def test_most_confused_ranks_by_count_then_name() -> None:
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["b", "b", "c", "a", "a", "a"]
    pairs = [(p.gold, p.predicted, p.count) for p in most_confused(gold, pred, top=3)]
    assert pairs == [("a", "b", 2), ("b", "a", 2), ("a", "c", 1)]
    assert most_confused(["a"], ["a"]) == []


def test_report_bundles_everything_and_serialises_with_top_level_keys() -> None:
    report = classification_report(GOLD, PRED, top_confused=10)
    data = report.model_dump()
    assert data["n"] == 8
    assert data["accuracy"] == pytest.approx(5 / 8)
    assert data["macro_f1"] == pytest.approx(macro_f1(GOLD, PRED))
    assert len(data["per_intent"]) == 3
    assert sum(p["count"] for p in data["confused"]) == 3  # every wrong row is in some pair


@pytest.mark.parametrize(("gold", "pred"), [([], []), (["a"], ["a", "b"])])
def test_bad_inputs_are_rejected(gold: list[str], pred: list[str]) -> None:
    with pytest.raises(ValueError):
        accuracy(gold, pred)
