"""The shadow comparison's pure parts: cosine, length ratio and the comparison of two masked answers."""

from __future__ import annotations

import pytest

from finserve.serving.shadow import compare, cosine, length_ratio


@pytest.mark.parametrize(
    ("name", "a", "b", "expected"),
    [
        ("same direction", [1.0, 0.0], [2.0, 0.0], 1.0),
        ("orthogonal", [1.0, 0.0], [0.0, 3.0], 0.0),
        ("opposite is clipped to 0", [1.0, 0.0], [-1.0, 0.0], 0.0),
        ("45 degrees", [1.0, 0.0], [1.0, 1.0], 2**-0.5),
        ("a zero vector has no similarity", [0.0, 0.0], [1.0, 0.0], 0.0),
    ],
)
def test_cosine(name, a, b, expected):
    assert cosine(a, b) == pytest.approx(expected), name


@pytest.mark.parametrize(
    ("stable", "shadow", "expected"),
    [
        ("one two three four", "one two", 0.5),
        ("a b", "a b c d", 2.0),
        ("", "anything", None),
        ("a b", "", 0.0),
    ],
)
def test_length_ratio_counts_words(stable, shadow, expected):
    assert length_ratio(stable, shadow) == expected


def test_compare_sums_pii_and_compares_intents():
    c = compare(
        "a b c d",
        "a b",
        [[1.0, 0.0], [1.0, 0.0]],
        "card_arrival",
        "card_arrival",
        {"CREDIT_CARD": 2, "IBAN_CODE": 1},
    )
    assert (c.similarity, c.intent_agree, c.pii, c.length_ratio) == (pytest.approx(1.0), True, 3, 0.5)
    assert compare("a", "b", [[1.0], [1.0]], "card_arrival", "exchange_rate", {}).intent_agree is False
    assert compare("a", "b", [[1.0], [1.0]], None, "exchange_rate", {}).intent_agree is None
