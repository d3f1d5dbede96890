"""UK sort codes and account numbers: shape plus keyword or pairing, never shape alone."""

from __future__ import annotations

import pytest

from finserve.serving.guard.uk_bank_recognizer import ACCOUNT_NUMBER, SORT_CODE, find_uk_bank_details


def _found(text: str) -> list[tuple[str, str]]:
    return [(entity, text[start:end]) for entity, start, end, _ in find_uk_bank_details(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sort code 20-00-00 account 12345678", [(SORT_CODE, "20-00-00"), (ACCOUNT_NUMBER, "12345678")]),
        (
            "my sort code is 20 00 00 and account number 1234 5678",
            [(SORT_CODE, "20 00 00"), (ACCOUNT_NUMBER, "1234 5678")],
        ),
        ("details: 40-47-84 31926819 thanks", [(SORT_CODE, "40-47-84"), (ACCOUNT_NUMBER, "31926819")]),
        ("40-47-84, a/c 31926819", [(SORT_CODE, "40-47-84"), (ACCOUNT_NUMBER, "31926819")]),
        ("Sort code: 404784", [(SORT_CODE, "404784")]),
        ("account number: 31926819", [(ACCOUNT_NUMBER, "31926819")]),
        ("acc no. 55779911", [(ACCOUNT_NUMBER, "55779911")]),
        ("my sort code's 20-00-00", [(SORT_CODE, "20-00-00")]),
        ("my acct no's 12345678", [(ACCOUNT_NUMBER, "12345678")]),
    ],
)
def test_finds_uk_bank_details(text: str, expected: list[tuple[str, str]]) -> None:
    assert _found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I paid on 12-05-24 and it has not arrived",
        "order 12345678 is late",
        "my account has 12345678 points",
        "card 4111 1111 1111 1111",
        "account 1234 5678 9012 3456",  # a card number after "account" is not an account number
        "sort code 20-00-00-11",  # four pairs: not a sort code
        "20-00-00 was the reference",
    ],
)
def test_ignores_lookalikes(text: str) -> None:
    assert _found(text) == []
