"""PINs, card security codes and expiry dates: values count only right after their keyword."""

from __future__ import annotations

import pytest

from finserve.serving.guard.card_secret_recognizer import find_card_secrets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my pin is 4821", ["4821"]),
        ("CVV: 123 thanks", ["123"]),
        ("security code 0042", ["0042"]),
        ("PIN number 123456", ["123456"]),
        ("pin: 1234.", ["1234"]),
        ("cvc2 = 987 and pin 1111", ["987", "1111"]),
        ("the code on the back is 737", ["737"]),
        ("3-digit security code: 042", ["042"]),
        ("card 4111 1111 1111 1111 exp 09/27", ["09/27"]),
        ("it expires 12/2026", ["12/2026"]),
        ("valid thru 04-28", ["04-28"]),
        ("the 3 digits on the back are 987", ["987"]),
        ("my card expires in March 2028", ["March 2028"]),
        ("exp: sept. 2027", ["sept. 2027"]),
        ("valid until Jan '29", ["Jan '29"]),
        ("my pin's 4921", ["4921"]),
        ("meine PIN ist 4921", ["4921"]),  # "is" in other European languages
        ("mi PIN es 4921", ["4921"]),
        ("my cvv's 123", ["123"]),
        ("expiry's 09/27", ["09/27"]),
    ],
)
def test_finds_secrets(text: str, expected: list[str]) -> None:
    assert [text[a:b] for a, b in find_card_secrets(text)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "I forgot my PIN",
        "pin 12345678",  # too long for a PIN: an account or card fragment
        "my pin was changed 3 times",
        "cvv 12.50",
        "spin 1234",
        "I paid 1234 for the PIN reader",
        "when does my card expire?",
        "the offer expires 14/03",  # not a month
        "my card expires in march",  # no year: which month is not the secret
        "it expires in May 25 days from now",
        "my pin's blocked after 3 tries",
    ],
)
def test_ignores_other_numbers(text: str) -> None:
    assert find_card_secrets(text) == []
