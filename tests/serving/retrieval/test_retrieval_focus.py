"""The search text: a customer's greeting, self-introduction and signed sign-off are not what they ask."""

from __future__ import annotations

import pytest

from finserve.serving.retrieval.focus import focus


@pytest.mark.parametrize(
    ("text", "focused"),
    [
        ("Hello, <PERSON> here. My top-up keeps failing", "My top-up keeps failing"),
        ("hi im <PERSON> and i see two charges", "i see two charges"),
        ("hey its <PERSON> here, whats the most i can top up", "whats the most i can top up"),
        (
            "Good morning, my name is <PERSON>. Good afternoon. I want to close my account",
            "I want to close my account",
        ),
        ("Hi there, <PERSON> speaking. Why was I charged?", "Why was I charged?"),
        ("hello this is <PERSON:ab12cd34>, card declined", "card declined"),  # the hash action's pseudonym
        ("Hi, my card is lost", "my card is lost"),
        ("My card is lost. Thanks, <PERSON>", "My card is lost"),
        ("My card is lost.\n\nKind regards,\n<PERSON>", "My card is lost"),
    ],
)
def test_drops_the_opening_and_the_signature(text: str, focused: str) -> None:
    assert focus(text) == focused


@pytest.mark.parametrize(
    "text",
    [
        "I sent money to <PERSON> and it did not arrive",  # a name inside the question is part of it
        "Evening withdrawals are blocked?",  # a greeting word that starts the question, no punctuation after it
        "Hi there I need help",
        "hi im <PERSON>",  # nothing else: the message itself
        "Why is there a fee on my transfer?",
        "Thanks",
    ],
)
def test_leaves_the_question_as_it_is(text: str) -> None:
    assert focus(text) == text
