"""Turning recognizer hits, which may overlap, into disjoint spans: pure, no Presidio types."""

from __future__ import annotations

from typing import NamedTuple


class Span(NamedTuple):
    entity_type: str
    start: int
    end: int
    score: float


def _rank(span: Span) -> tuple[float, int, str]:
    # Higher score wins, then the longer span; the type name only makes ties deterministic.
    return (span.score, span.end - span.start, span.entity_type)


def merge_overlaps(spans: list[Span]) -> list[Span]:
    """Disjoint spans sorted by start; each group of overlapping hits becomes one span.

    The merged span covers the union of the group, so no character any recognizer flagged is left
    in clear; it takes the type and score of the group's best hit. Touching spans stay apart.
    """
    ordered = sorted((s for s in spans if s.end > s.start), key=lambda s: (s.start, -s.end))
    groups: list[tuple[int, int, Span]] = []  # (start, end, best hit)
    for span in ordered:
        if groups and span.start < groups[-1][1]:
            start, end, best = groups[-1]
            groups[-1] = (start, max(end, span.end), max(best, span, key=_rank))
        else:
            groups.append((span.start, span.end, span))
    return [Span(best.entity_type, start, end, best.score) for start, end, best in groups]
