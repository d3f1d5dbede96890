"""Dates of birth: a date with a birth keyword just before or after it.

Banking chat is full of dates (transactions, transfers, statements) that the assistant needs, so
a date is never PII on its shape; "date of birth", "DOB", "born (on)", "birthday" next to it make
it one: "my date of birth is 14/03/1985", "DOB: 1985-03-14", "born on the 3rd of March 1985",
"14.03.1985 is my DOB". After "born" a month and year or a year alone count too ("born in 1985").
"""

from __future__ import annotations

import regex as re

from .finder_recognizer import IS_CONTRACTED, FinderRecognizer

ENTITY = "DATE_OF_BIRTH"
SCORE = 0.85

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DAY = r"(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?"
_YEAR = r"(?:1[89]|20)\d{2}"
_FULL_DATE = (
    r"\d{1,2}(?P<s>\s?[./\-]\s?|\s)\d{1,2}(?P=s)(?:\d{4}|\d{2})"  # 14/03/1985, 14.03.85, 14 03 1985
    rf"|{_YEAR}(?P<i>\s?[./\-]\s?)\d{{1,2}}(?P=i)\d{{1,2}}"  # 1985-03-14
    rf"|{_DAY}\s+(?:of\s+)?{_MONTH},?\s+(?:{_YEAR}|'?\d{{2}})"  # 3rd of March 1985, 14 Mar 85
    rf"|{_DAY}(?P<m>[\-./]?){_MONTH}(?P=m)(?:{_YEAR}|\d{{2}})"  # 14MAR1985, 14-Mar-1985
    rf"|{_MONTH}\s+{_DAY},?\s+{_YEAR}"  # March 14, 1985
)
# After "born" a date may be partial: "born on 3 March", "born in March 1985", "born in 1985".
_PARTIAL_DATE = rf"{_DAY}\s+(?:of\s+)?{_MONTH}|{_MONTH}\s+{_DAY}(?!\d)|{_MONTH},?\s+{_YEAR}|{_YEAR}"
# Right after a birth keyword a day and month without the year count too: "my birthday is 5/11".
_DAY_MONTH = re.compile(r"(?<![\w/.\-])\d{1,2}\s?[./\-]\s?\d{1,2}(?![\w/]|[.\-]\d)")
_BOUNDED = r"(?<![\w/.\-])(?:{})(?![\w/]|[.\-]\d)"
_DATE = re.compile("(?i)" + _BOUNDED.format(_FULL_DATE))
_ANY_DATE = re.compile("(?i)" + _BOUNDED.format(f"{_FULL_DATE}|{_PARTIAL_DATE}"))

_KEYWORD = r"(?:date|day)\s+of\s+birth|birth\s?date|birth\s?day|b[\-\s]?day|d\.?\s?o\.?\s?b\.?"
_BEFORE = re.compile(
    rf"(?i)\b(?:{_KEYWORD})(?:\s+(?:is|was|are|of|on|reads|shows)|{IS_CONTRACTED})*(?:\s+(?:the|on))?[\s:=,\-(]*$"
)
# "born in London in 1975": a birthplace may stand between "born" and the date.
_BORN_BEFORE = re.compile(
    r"(?i)\bborn(?:\s+in\s+(?-i:\p{Lu}\p{L}+(?:\s+\p{Lu}\p{L}+)?),?)?(?:\s+(?:on|in))?(?:\s+the)?[\s:,\-]*$"
)
_AFTER = re.compile(
    rf"(?i)^[\s,(\-]*(?:(?:is|was|being|as)\s+)?(?:(?:my|his|her|their|our|the|your)\s+)?(?:{_KEYWORD})\b"
)
# What may follow a keyword before the date it introduces ("DOB is 01/02/1990").
_INTRODUCES = re.compile(rf"(?i)^(?:\s+(?:is|was)|{IS_CONTRACTED})?(?:\s+the)?[\s:=,\-(]*\d")
_LOOK = 48


def find_birth_dates(text: str) -> list[tuple[int, int]]:
    """(start, end) of each date of birth in `text`."""
    found = []
    for m in _ANY_DATE.finditer(text):
        before = text[max(0, m.start() - _LOOK) : m.start()]
        if _BORN_BEFORE.search(before):
            found.append((m.start(), m.end()))
        elif _DATE.fullmatch(m.group()) and (_BEFORE.search(before) or _keyword_after(text, m.end())):
            found.append((m.start(), m.end()))
    for m in _DAY_MONTH.finditer(text):
        if _BEFORE.search(text[max(0, m.start() - _LOOK) : m.start()]) and not any(
            a <= m.start() < b for a, b in found
        ):
            found.append((m.start(), m.end()))
    return sorted(found)


def _keyword_after(text: str, end: int) -> bool:
    """A birth keyword right after the date, unless it introduces a date of its own."""
    after = _AFTER.match(text[end : end + _LOOK])
    return after is not None and not _INTRODUCES.match(text[end + after.end() : end + after.end() + _LOOK])


class BirthDateRecognizer(FinderRecognizer):
    """Presidio recognizer for dates of birth; see module docstring."""

    def __init__(self, supported_language: str = "en") -> None:
        why = "a date next to a birth keyword"
        super().__init__(ENTITY, find_birth_dates, SCORE, why, "BirthDateRecognizer", supported_language)
