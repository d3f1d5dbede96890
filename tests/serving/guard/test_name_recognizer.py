"""Names introduced by the text, without NER: positives, and the capitalised words that are not names."""

from __future__ import annotations

import pytest

from finserve.serving.guard.name_recognizer import STRONG_SCORE, WEAK_SCORE, find_names


def _names(text: str) -> list[tuple[str, float]]:
    return [(text[start:end], score) for start, end, score in find_names(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my name is Jane Doe", [("Jane Doe", STRONG_SCORE)]),
        ("My name's Ana Lucia Souza.", [("Ana Lucia Souza", STRONG_SCORE)]),
        ("I'm John Smith and my card is stuck", [("John Smith", WEAK_SCORE)]),
        ("I’m Chloé Dubois", [("Chloé Dubois", WEAK_SCORE)]),
        ("Hi, this is Maria Garcia.", [("Maria Garcia", WEAK_SCORE)]),
        ("The name on the card is Peter O'Neil-Brown", [("Peter O'Neil-Brown", STRONG_SCORE)]),
        ("account holder is Mr. Tom Jones", [("Tom Jones", STRONG_SCORE)]),
        ("I am Dr. Ann van der Berg", [("Ann van der Berg", WEAK_SCORE)]),
        ("My name is May Chen", [("May Chen", STRONG_SCORE)]),  # a month after a strong phrase
        ("MY NAME IS JOHN SMITH", [("JOHN SMITH", STRONG_SCORE)]),
        ("Regards,\nJames T. Kirk", [("James T. Kirk", STRONG_SCORE)]),
        ("I am Jean-Luc Picard and I need help", [("Jean-Luc Picard", WEAK_SCORE)]),
        ("this is Jane van", [("Jane", WEAK_SCORE)]),  # a trailing particle is not part of the name
    ],
)
def test_finds_introduced_names(text: str, expected: list[tuple[str, float]]) -> None:
    assert _names(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I'm waiting for my card",
        "I am still waiting on my card?",
        "I'm in America",
        "I am British",
        "this is Visa",
        "It's Monday already",
        "This is Urgent",
        "this is URGENT",
        "I AM MISSING CASH FROM MY BANK ACCOUNT",
        "I am Mr. in a hurry",
        "my name is jane doe",  # lowercase names are not caught without NER (docs/pii.md)
        "How do I change my name?",
        "Jane Doe called",  # no introducing phrase: NER territory
    ],
)
def test_ignores_non_names(text: str) -> None:
    assert _names(text) == []
