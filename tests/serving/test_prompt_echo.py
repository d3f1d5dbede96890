"""Detecting an answer that repeats the configured instructions (pure)."""

from __future__ import annotations

import pytest

from finserve.serving.config import DEFAULT_SYSTEM_PROMPT
from finserve.serving.prompt_echo import EchoCheck


@pytest.fixture(scope="module")
def check() -> EchoCheck:
    return EchoCheck(DEFAULT_SYSTEM_PROMPT)


def test_the_instructions_repeated_are_found_wherever_they_start(check):
    assert check.found(DEFAULT_SYSTEM_PROMPT)
    assert check.found("Sure. You are the customer assistant of a bank, and so on.")
    # case, punctuation and line breaks do not hide it
    assert check.found("ANSWER the customer's question\nbriefly, and politely: using only the facts")


def test_ordinary_answers_sharing_a_few_words_are_not_echoes(check):
    assert not check.found(
        "You need to be at least 18 years old to open a personal account. If the knowledge does not "
        "say, please contact support from the app."
    )
    assert not check.found("Never share your card number with anyone.")  # 5 words of one instruction
    assert not check.found("")


def test_the_window_is_the_number_of_consecutive_words():
    short = EchoCheck("one two three four five six", window=3)
    assert short.found("x two three four y") and not short.found("two three x four five")
    with pytest.raises(ValueError):
        EchoCheck("anything", window=1)
    assert not EchoCheck("too short", window=8).found("too short")


def test_the_stream_check_reads_only_what_the_newest_piece_can_complete(check):
    answer = "Your card usually arrives within five working days of ordering. " * 20
    echo = answer + DEFAULT_SYSTEM_PROMPT
    # fed piece by piece as a stream is, the echo is found at the piece that completes its first run
    pieces = echo.split(" ")
    text, hits = "", []
    for i, piece in enumerate(pieces):
        piece = (" " if i else "") + piece
        text += piece
        hits.append(check.found_at_end(text, len(piece)))
    first = hits.index(True)
    assert not any(hits[:first]) and check.found(text[: len(" ".join(pieces[: first + 1]))])
    assert not check.found(" ".join(pieces[:first]))
    # a cut word at the start of the tail is dropped, never matched as a word of its own
    assert not check.found_at_end("x" * 1000, 1)
