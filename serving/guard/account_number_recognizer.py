"""Bank account and customer numbers of any country after their keyword.

UK accounts (eight digits, with or without a sort code) are UK_ACCOUNT_NUMBER's; this rule takes
the other lengths banks use, 6 to 17 digits (US checking accounts, legacy 7- and 10-digit UK
accounts, Australian and Indian accounts), and customer or membership numbers, but only right
after their keyword: "acct 000123456789", "account no. 1234567", "customer number 8877665544".
Digit runs are everywhere in banking chat (amounts, references, transaction ids), so a run
without the keyword is never reported. Eight digits are left to the UK rule. Scored 0.96: the
keyword says what the digits are, so it names the type over phone shapes, which read "number" as
their context word (a 10-12 digit account starting 0 looks like a phone); cards and IBANs (1.0) win.
"""

from __future__ import annotations

import regex as re

from .finder_recognizer import IS_CONTRACTED, IS_OTHER_LANGUAGES, FinderRecognizer

ENTITY = "ACCOUNT_NUMBER"
SCORE = 0.96

_KEYWORD = (
    r"(?:bank\s+|checking\s+|savings\s+|current\s+|my\s+|the\s+)?(?:account|acct|acc|a/c)"
    r"|(?:customer|client|member(?:ship)?)\s+(?:number|no\.?|num|#|id)"
)
_PATTERN = re.compile(
    rf"(?i)\b(?:{_KEYWORD})(?:\s+(?:number|no\.?|num|nr\.?|#))?(?:\s+(?:is|was|ending\s+in|{IS_OTHER_LANGUAGES})|{IS_CONTRACTED})?[\s:#=\-]*"
    r"(?P<value>(?<![\d\-])\d(?:[ \-]?\d){5,16})(?![\d]|[.,]\d|[ \-]\d)"
)


_UK_LENGTH = 8  # UK_ACCOUNT_NUMBER's


def find_account_numbers(text: str) -> list[tuple[int, int]]:
    """(start, end) of each account or customer number in `text`."""
    return [
        (m.start("value"), m.end("value"))
        for m in _PATTERN.finditer(text)
        if sum(c.isdigit() for c in m.group("value")) != _UK_LENGTH
    ]


class AccountNumberRecognizer(FinderRecognizer):
    """Presidio recognizer for bank account and customer numbers; see module docstring."""

    def __init__(self, supported_language: str = "en") -> None:
        why = "an account or customer number after its keyword"
        super().__init__(
            ENTITY, find_account_numbers, SCORE, why, "AccountNumberRecognizer", supported_language
        )
