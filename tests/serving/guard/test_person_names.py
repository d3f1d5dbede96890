"""The packaged name lists: what each entry says, and how words are looked up."""

from __future__ import annotations

import pytest

from finserve.serving.guard.person_names import GIVEN, SURNAME, WORD, PersonNames, person_names


@pytest.mark.parametrize(
    ("word", "kind"),
    [
        ("sarah", GIVEN | SURNAME),  # Faker lists Sarah as a surname too
        ("priya", GIVEN),  # not in the US Census: Faker's en_IN
        ("sharma", SURNAME),
        ("will", GIVEN | SURNAME | WORD),  # a name and an everyday word: the rules ask for more
        ("card", SURNAME | WORD),
        ("atm", WORD),  # Banking77's customers' word, in no dictionary
        ("tryna", WORD),  # the chat words
        ("haoran", 0),  # in no list: a name after "hi im" reads as one
    ],
)
def test_entry_kinds(word: str, kind: int) -> None:
    assert person_names().kind(word) == kind


def test_places_that_read_as_names() -> None:
    places = person_names().places
    assert {"hong kong", "costa rica", "el salvador", "sri lanka"} <= places
    assert all(" " in place for place in places)  # a one-word place is the cue rules' business


@pytest.mark.parametrize(
    ("word", "folded"),
    [("Sarah", "sarah"), ("O’Brien", "o'brien"), ("Marco's", "marco"), ("STRASSE", "strasse")],
)
def test_fold(word: str, folded: str) -> None:
    assert PersonNames.fold(word) == folded


def test_read_once_per_process() -> None:
    assert person_names() is person_names()
