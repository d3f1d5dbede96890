"""The out-of-scope gate's decision on the retrieved examples' scores (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import ValidationError

from finserve.serving.intent.scope import ScopeConfig, nearest_similarity, needs_context, out_of_scope


@dataclass
class Hit:
    intent: str
    score: float


def test_the_nearest_example_decides_not_the_first():
    hits = [Hit("card_arrival", 0.41), Hit("exchange_rate", 0.72), Hit("card_arrival", 0.5)]
    assert nearest_similarity(hits) == 0.72
    assert not out_of_scope(hits, ScopeConfig(min_similarity=0.55))
    assert out_of_scope(hits, ScopeConfig(min_similarity=0.8))


def test_the_threshold_itself_is_in_scope():
    assert not out_of_scope([Hit("card_arrival", 0.55)], ScopeConfig(min_similarity=0.55))
    assert out_of_scope([Hit("card_arrival", 0.5499)], ScopeConfig(min_similarity=0.55))


def test_an_off_topic_nearest_example_turns_the_question_away_whatever_its_neighbours():
    hits = [Hit("card_arrival", 0.80), Hit("out_of_scope", 0.83), Hit("card_arrival", 0.79)]
    assert out_of_scope(hits, ScopeConfig(min_similarity=0.55))
    assert nearest_similarity(hits) == 0.80  # the in-scope neighbours' best, off-topic ones left out
    # an off-topic example that is not the nearest is only a neighbour: the question stays in scope
    assert not out_of_scope([Hit("card_arrival", 0.85), Hit("out_of_scope", 0.83)], ScopeConfig())
    assert (
        out_of_scope([Hit("out_of_scope", 0.4)], ScopeConfig())
        and nearest_similarity([Hit("out_of_scope", 0.4)]) is None
    )


def test_no_examples_is_no_evidence():
    assert nearest_similarity([]) is None
    assert not out_of_scope([], ScopeConfig(min_similarity=0.99))


def test_a_disabled_gate_turns_nothing_away():
    assert not out_of_scope([Hit("card_arrival", -0.2)], ScopeConfig(enabled=False))


@pytest.mark.parametrize(
    "bad", [{"min_similarity": 1.5}, {"min_similarity": -2}, {"answer": ""}, {"threshold": 0.5}]
)
def test_invalid_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        ScopeConfig(**bad)


def test_only_a_question_far_from_everything_may_be_explained_by_its_conversation():
    config = ScopeConfig(min_similarity=0.55)
    assert needs_context([Hit("card_arrival", 0.4), Hit("out_of_scope", 0.3)], config)
    assert not needs_context([Hit("out_of_scope", 0.4), Hit("card_arrival", 0.3)], config)  # listed off-topic
    assert not needs_context([Hit("card_arrival", 0.7)], config)  # in scope already
    assert not needs_context([], config)
    assert not needs_context([Hit("card_arrival", 0.4)], ScopeConfig(enabled=False))
