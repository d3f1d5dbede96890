"""The retrieval vote and the head/vote mix: pure functions over hits."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from finserve.serving.intent.vote import best, mix, vote


@dataclass
class H:
    intent: str
    score: float


def test_vote_weights_neighbours_by_exponentiated_similarity() -> None:
    probs = vote([H("a", 0.9), H("b", 0.8), H("b", 0.8)], temperature=0.1)
    wa, wb = math.exp(0.0), 2 * math.exp(-1.0)
    assert probs["a"] == pytest.approx(wa / (wa + wb))
    assert probs["b"] == pytest.approx(wb / (wa + wb))
    assert sum(probs.values()) == pytest.approx(1.0)


def test_low_temperature_lets_the_nearest_neighbour_win_over_a_majority() -> None:
    hits = [H("a", 0.95), H("b", 0.80), H("b", 0.80), H("b", 0.80)]
    assert best(vote(hits, temperature=0.02))[0] == "a"
    assert best(vote(hits, temperature=10.0))[0] == "b"


def test_vote_on_no_examples_is_empty_and_rejects_bad_temperature() -> None:
    assert vote([], 0.05) == {}
    with pytest.raises(ValueError):
        vote([H("a", 1.0)], 0.0)


def test_mix_is_a_convex_combination_and_tolerates_missing_votes() -> None:
    head = {"a": 0.6, "b": 0.4}
    votes = {"b": 1.0}
    mixed = mix(head, votes, 0.5)
    assert mixed == pytest.approx({"a": 0.3, "b": 0.7})
    assert mix(head, {}, 0.5) == head
    assert mix(head, votes, 0.0) == head


def test_best_breaks_ties_by_name() -> None:
    assert best({"b": 0.5, "a": 0.5}) == ("a", 0.5)
    with pytest.raises(ValueError):
        best({})


def test_blend_then_mix_gives_each_opinion_its_share() -> None:
    import numpy as np

    from finserve.serving.intent.vote import blend

    head, enc = {"a": 0.9, "b": 0.1}, {"a": 0.2, "b": 0.8}
    votes = {"b": 1.0}
    part = blend(np.array([head["a"], head["b"]]), np.array([enc["a"], enc["b"]]), 0.25, 0.35)
    served = mix({"a": float(part[0]), "b": float(part[1])}, votes, 0.25)
    assert served["a"] == pytest.approx(0.40 * 0.9 + 0.35 * 0.2)
    assert served["b"] == pytest.approx(0.40 * 0.1 + 0.35 * 0.8 + 0.25)
    assert blend(0.7, 0.1, 1.0, 0.0) == 0.7  # the vote alone decides: the head part passes through
    with pytest.raises(ValueError, match="exceed 1"):
        blend(0.5, 0.5, 0.7, 0.4)


def test_off_topic_examples_cast_no_vote() -> None:
    probs = vote([H("out_of_scope", 0.99), H("a", 0.7), H("b", 0.6)], temperature=0.05)
    assert set(probs) == {"a", "b"} and best(probs)[0] == "a"
    assert vote([H("out_of_scope", 0.99)], 0.05) == {}
