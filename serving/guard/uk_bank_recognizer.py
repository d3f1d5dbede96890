"""UK sort codes and account numbers, found by their shape plus the words around them.

Six digits in pairs (20-00-00) and eight-digit numbers are everywhere (dates, order numbers), so
neither is reported on its shape alone. A sort code needs "sort code" just before it, or an
account number right after it; an account number needs "account (number)" just before it, or a
sort code right before it.
"""

from __future__ import annotations

from typing import Any

import regex as re
from presidio_analyzer import LocalRecognizer, RecognizerResult

from .finder_recognizer import IS_CONTRACTED
from .hits import make_result

SORT_CODE = "UK_SORT_CODE"
ACCOUNT_NUMBER = "UK_ACCOUNT_NUMBER"

KEYWORD_SCORE = 0.85
PAIR_SCORE = 0.85
KEYWORD_ONLY_ACCOUNT_SCORE = 0.6

# Same separator between all three pairs; never part of a longer digit run.
_SORT = re.compile(r"(?<![\d\-])(\d{2})([- ]?)(\d{2})\2(\d{2})(?![\d]|-\d)")
# Eight digits, optionally split 4+4 by one space or dash, not followed by more digit groups.
_ACCOUNT = re.compile(r"(?<!\d)\d{4}[ \-]?\d{4}(?![ \-]?\d)")
_GROUP_BEFORE = re.compile(r"\d[ \-]$")
_SORT_KEYWORD = re.compile(
    rf"(?i)\bsort[\s\-]?code(?:\s+(?:is|no\.?|number))?(?:{IS_CONTRACTED})?[\s:#.,\-]*$"
)
_ACCOUNT_KEYWORD = re.compile(
    rf"(?i)\b(?:account|acct|acc|a/c)(?:\s+(?:number|no\.?|num|#))?(?:\s+is|{IS_CONTRACTED})?[\s:#.,\-]*$"
)
# What may stand between a sort code and the account number that follows it.
_PAIR_GAP = re.compile(
    rf"(?i)^[\s,;/:\-]*(?:(?:and\s+)?(?:account|acct|acc|a/c)(?:\s+(?:number|no\.?|num|#))?(?:\s+is|{IS_CONTRACTED})?[\s:#.,\-]*)?$"
)
_LOOKBACK = 40
_DIGIT = re.compile(r"\d")


def find_uk_bank_details(text: str) -> list[tuple[str, int, int, float]]:
    """(entity type, start, end, score) of each sort code and account number in `text`."""
    sorts = [(m.start(), m.end()) for m in _SORT.finditer(text)]
    sort_ends = {end for _, end in sorts}
    # A digit group right before the candidate makes it the tail of a longer number (a card),
    # unless that group ends a sort code ("40-47-84 31926819").
    accounts = [
        (m.start(), m.end())
        for m in _ACCOUNT.finditer(text)
        if not _GROUP_BEFORE.search(text, 0, m.start()) or m.start() - 1 in sort_ends
    ]
    found: list[tuple[str, int, int, float]] = []
    paired_accounts: set[tuple[int, int]] = set()
    for s_start, s_end in sorts:
        after = [a for a in accounts if a[0] >= s_end and _PAIR_GAP.match(text[s_end : a[0]])]
        if after:
            paired_accounts.add(after[0])
            found.append((SORT_CODE, s_start, s_end, PAIR_SCORE))
        elif _SORT_KEYWORD.search(text[max(0, s_start - _LOOKBACK) : s_start]):
            found.append((SORT_CODE, s_start, s_end, KEYWORD_SCORE))
    for a_start, a_end in accounts:
        if (a_start, a_end) in paired_accounts:
            found.append((ACCOUNT_NUMBER, a_start, a_end, PAIR_SCORE))
        elif _ACCOUNT_KEYWORD.search(text[max(0, a_start - _LOOKBACK) : a_start]):
            found.append((ACCOUNT_NUMBER, a_start, a_end, KEYWORD_ONLY_ACCOUNT_SCORE))
    return sorted(found, key=lambda f: f[1])


class UkBankDetailsRecognizer(LocalRecognizer):
    """Presidio recognizer for UK sort codes and account numbers; see module docstring."""

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            supported_entities=[SORT_CODE, ACCOUNT_NUMBER],
            supported_language=supported_language,
            name="UkBankDetailsRecognizer",
        )

    def load(self) -> None:
        """Nothing to load: the patterns are compiled at import."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        wanted = set(entities) & {SORT_CODE, ACCOUNT_NUMBER}
        if not wanted or not _DIGIT.search(text):
            return []
        return [
            make_result(self, entity, start, end, score, "UK bank detail with its keyword or its pair")
            for entity, start, end, score in find_uk_bank_details(text)
            if entity in wanted
        ]
