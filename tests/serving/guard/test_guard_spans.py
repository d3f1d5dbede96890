"""merge_overlaps: overlapping recognizer hits become one span covering all of them."""

from __future__ import annotations

from finserve.serving.guard.spans import Span, merge_overlaps


def test_disjoint_spans_are_kept_and_sorted() -> None:
    spans = [Span("B", 10, 12, 0.5), Span("A", 0, 4, 0.9), Span("C", 4, 6, 0.4)]
    assert merge_overlaps(spans) == [Span("A", 0, 4, 0.9), Span("C", 4, 6, 0.4), Span("B", 10, 12, 0.5)]


def test_overlap_takes_the_union_and_the_best_type() -> None:
    spans = [Span("PHONE_NUMBER", 5, 20, 0.4), Span("CREDIT_CARD", 0, 19, 1.0)]
    assert merge_overlaps(spans) == [Span("CREDIT_CARD", 0, 20, 1.0)]


def test_equal_scores_prefer_the_longer_span() -> None:
    spans = [Span("US_SSN", 3, 14, 0.85), Span("PHONE_NUMBER", 0, 14, 0.85)]
    assert merge_overlaps(spans) == [Span("PHONE_NUMBER", 0, 14, 0.85)]


def test_chains_of_overlaps_merge_into_one() -> None:
    spans = [Span("A", 0, 5, 0.5), Span("B", 4, 9, 0.6), Span("C", 8, 12, 0.4)]
    assert merge_overlaps(spans) == [Span("B", 0, 12, 0.6)]


def test_empty_spans_are_dropped() -> None:
    assert merge_overlaps([Span("A", 3, 3, 1.0)]) == []
