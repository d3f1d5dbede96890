"""Dates of birth: a date counts only next to a birth keyword."""

from __future__ import annotations

import pytest

from finserve.serving.guard.birth_date_recognizer import find_birth_dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my date of birth is 14/03/1985", ["14/03/1985"]),
        ("DOB: 1985-03-14", ["1985-03-14"]),
        ("d.o.b. 03-14-1985 thanks", ["03-14-1985"]),
        ("birth date 14 03 1985", ["14 03 1985"]),
        ("my birthday is March 14, 1985", ["March 14, 1985"]),
        ("DOB 14 Mar 85", ["14 Mar 85"]),
        ("born on the 3rd of March 1985", ["3rd of March 1985"]),
        ("I was born 3 March", ["3 March"]),
        ("born in 1985", ["1985"]),
        ("14.03.1985 is my DOB", ["14.03.1985"]),
        ("12/05/1990 (date of birth)", ["12/05/1990"]),
        # the keyword after a date introduces the next one, not this one
        ("I paid 12/05/2024, my dob is 01/02/1990", ["01/02/1990"]),
        ("DOB:14MAR1985", ["14MAR1985"]),
        ("born 14-Mar-1985", ["14-Mar-1985"]),
        ("my birthday is 5/11", ["5/11"]),
        ("I was born in London in 1975", ["1975"]),
        ("my dob's 12/03/1988", ["12/03/1988"]),
        ("my birthday's 7th march 88", ["7th march 88"]),
    ],
)
def test_finds_birth_dates(text: str, expected: list[str]) -> None:
    assert [text[a:b] for a, b in find_birth_dates(text)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "the transfer on 14/03/2024 failed",
        "my date of birth is wrong",
        "statement from 1 March 2024 to 31 March 2024",
        "I want to change my birthday in the app",
        "in 1985 I opened the account",
        "the transfer on 14/03 failed",
        "my birthday is next week",
    ],
)
def test_ignores_other_dates(text: str) -> None:
    assert find_birth_dates(text) == []
