"""Account and customer numbers of any length banks use: digits count only after their keyword."""

from __future__ import annotations

import pytest

from finserve.serving.guard.account_number_recognizer import find_account_numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acct 000123456789 routing 026009593", ["000123456789"]),
        ("account no. 1234567", ["1234567"]),
        ("my checking account number is 0012 3456 7890", ["0012 3456 7890"]),
        ("my account is 1234-5678-9012", ["1234-5678-9012"]),
        ("customer number 8877665544", ["8877665544"]),
        ("membership no: 5512345678", ["5512345678"]),
        ("my account number's 0012345678", ["0012345678"]),
    ],
)
def test_finds_account_numbers(text: str, expected: list[str]) -> None:
    assert [text[a:b] for a, b in find_account_numbers(text)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "account balance 1500",
        "I have 2 accounts",
        "account has 12345678 points",
        "account ending in 4321",
        "my account 12345678",  # eight digits: UK_ACCOUNT_NUMBER's
        "account 12.50 charge",
        "reference 1234-5678-9012 was on my statement",
    ],
)
def test_ignores_other_numbers(text: str) -> None:
    assert find_account_numbers(text) == []
