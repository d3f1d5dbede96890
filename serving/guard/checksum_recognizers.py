"""Cards and IBANs in any grouping, with Presidio's own checksums as the arbiter.

Presidio's card and IBAN patterns accept only spaces or dashes in fixed places, so
"4458.5630.7407.7526", "4458/5630/...", "gb82-west-1234-..." or a 15-digit Amex split 4-6-5 with
dots pass unseen. These subclasses read every run of digit (or alphanumeric) groups joined by one
kind of separator, try each stretch of whole groups with a plausible length, and keep the stretches
the parent's checksum accepts (Luhn for cards, mod-97 plus the country's format for IBANs). The
checksum is what keeps amounts, dates and reference numbers unmasked: a random digit string passes
Luhn one time in ten, so a stretch must also use a single separator kind throughout.

A card number that fails Luhn is still masked where it plainly is one: after a card word ("my card number is
1234 5678 9012 3456", "visa 4929 1738 5204 6617") or printed as a card is (four groups of four, Amex's 4-6-5).
A customer's typo leaves fifteen of the sixteen digits right, which PCI DSS allows nobody to keep. So is an
IBAN failing mod-97 when it has its country's format (Presidio's per-country patterns) or follows the word
"IBAN".
"""

from __future__ import annotations

from typing import Any

import regex as re
from presidio_analyzer import RecognizerResult
from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, IbanRecognizer
from presidio_analyzer.predefined_recognizers.generic.iban_patterns import regex_per_country

from .hits import CONTEXT_SCORE, make_result

# Between two groups: one punctuation separator with optional blanks, or one or two blanks.
_SEP = r"(?:[ \t]*[.\-/_][ \t]*|[ \t]{1,2})"
_CARD_RUN = re.compile(rf"(?<![\p{{L}}\d])\d+(?:{_SEP}\d+)*(?![\p{{L}}\d])")
_IBAN_RUN = re.compile(rf"(?i)(?<![\p{{L}}\d])[a-z]{{2}}\d{{2}}[a-z\d]*(?:{_SEP}[a-z\d]+)*")
_GROUP = re.compile(r"[\p{L}\d]+")

CARD_LENGTHS = range(13, 20)
CARD_FIRST_DIGITS = frozenset("23456")  # Amex/Diners 3, Visa 4, Mastercard 2 and 5, Discover/UnionPay 6
IBAN_LENGTHS = range(15, 35)
# Words that say the digits near them are a card's; the digits may come up to 48 characters after one
# ("my card number ... is"), or just before one ("4929 ... is my card number").
_CARD_WORD = (
    r"(?:card|visa|master\s?card|maestro|amex|american\s+express|discover|debit|credit|pan|long\s+number)"
)
_CARD_WORD_BEFORE = re.compile(rf"(?i)\b{_CARD_WORD}\b")
_CARD_WORD_AFTER = re.compile(
    rf"(?i)[\s,;:)\-]*(?:(?:is|was|are)\s+)?(?:(?:my|the|our|his|her)\s+)?(?:\w+\s+)?{_CARD_WORD}\b"
)
_CONTEXT_BEFORE = 48
# How cards are printed: in fours (the last group shorter on 13-19 digit numbers), or Amex's 4-6-5 and
# Diners' 4-6-4.
_PRINTED_GROUPS = ((4, 6, 5), (4, 6, 4))


def _printed_as_a_card(sizes: tuple[int, ...]) -> bool:
    return sizes in _PRINTED_GROUPS or (len(sizes) >= 4 and set(sizes[:-1]) == {4} and 1 <= sizes[-1] <= 4)


def _groups(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _GROUP.finditer(text, start, end)]


def _separator(text: str, left_end: int, right_start: int) -> str:
    # Blanks count: "2003. 5175" (a sentence ending) is not the "." of "5175.1366".
    return text[left_end:right_start]


def stretches(
    text: str, start: int, end: int, lengths: range, from_first_only: bool = False
) -> list[tuple[int, int, str]]:
    """(start, end, compact value) of every run of whole groups in [start, end) whose compact
    length is in `lengths` and which uses one separator kind throughout, longest first."""
    groups = _groups(text, start, end)
    seps = [_separator(text, groups[k][1], groups[k + 1][0]) for k in range(len(groups) - 1)]
    found: list[tuple[int, int, str]] = []
    for i in range(1 if from_first_only else len(groups)):
        size = 0
        for j in range(i, len(groups)):
            if j > i and seps[j - 1] != seps[i]:
                break
            size += groups[j][1] - groups[j][0]
            if size > lengths.stop - 1:
                break
            if size in lengths:
                value = "".join(text[a:b] for a, b in groups[i : j + 1])
                found.append((groups[i][0], groups[j][1], value))
    return sorted(found, key=lambda f: f[0] - f[1])


def _disjoint(candidates: list[tuple[int, int]]) -> list[tuple[int, int]]:
    kept: list[tuple[int, int]] = []
    for s, e in candidates:
        if all(e <= ks or s >= ke for ks, ke in kept):
            kept.append((s, e))
    return sorted(kept)


def card_shaped(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of each digit stretch in [start, end) that reads as a card number without its checksum:
    13-19 digits in one separator kind, after (or right before) a card word, or grouped as cards are printed.
    Stretches rather than the whole run: "since 2013. 4616 4170 2656 2248" is a year, then the number."""
    found = []
    for s, e, digits in stretches(text, start, end, CARD_LENGTHS):
        if len(set(digits)) < 2:
            continue
        sizes = tuple(b - a for a, b in _groups(text, s, e))
        before = text[max(0, s - _CONTEXT_BEFORE) : s]
        if _printed_as_a_card(sizes) or _CARD_WORD_BEFORE.search(before) or _CARD_WORD_AFTER.match(text, e):
            found.append((s, e))
    return _disjoint(found)


class SeparatedCardRecognizer(CreditCardRecognizer):
    """Presidio's card recognizer reading any one separator kind; Luhn decides, except for numbers that are
    plainly a card's (see the module docstring), reported with a lower score."""

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(supported_language=supported_language, name="SeparatedCardRecognizer")

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None, regex_flags: int | None = None
    ) -> list[RecognizerResult]:
        if self.supported_entities[0] not in entities:
            return []
        valid: list[tuple[int, int]] = []
        shaped: list[tuple[int, int]] = []
        for run in _CARD_RUN.finditer(text):
            if run.end() - run.start() < CARD_LENGTHS.start:
                continue
            found = False
            for s, e, digits in stretches(text, run.start(), run.end(), CARD_LENGTHS):
                if digits[0] in CARD_FIRST_DIGITS and len(set(digits)) > 1 and self.validate_result(digits):
                    valid.append((s, e))
                    found = True
            if not found:
                shaped += card_shaped(text, run.start(), run.end())
        entity = self.supported_entities[0]
        return [
            make_result(self, entity, s, e, 1.0, "digit groups passing the Luhn check")
            for s, e in _disjoint(valid)
        ] + [
            make_result(self, entity, s, e, CONTEXT_SCORE, "a card number by its words or its groups")
            for s, e in shaped
        ]


_IBAN_WORD = re.compile(r"(?i)\biban\b")
_IBAN_CONTEXT_BEFORE = 24


def iban_shaped(candidates: list[tuple[int, int, str]], before: str) -> tuple[int, int] | None:
    """The stretch that is an IBAN although it failed mod-97: the longest ending in a digit (not the words after
    it) that starts in its country's format (Presidio's pattern, read from the start as Presidio does) or follows
    the word IBAN."""
    ending_in_digit = [(s, e, value) for s, e, value in candidates if value[-1].isdigit()]
    if not ending_in_digit:
        return None
    s, e, value = ending_in_digit[0]
    pattern = regex_per_country.get(value[:2].upper())
    if (pattern is not None and re.match(pattern, value.upper())) or _IBAN_WORD.search(before):
        return s, e
    return None


class SeparatedIbanRecognizer(IbanRecognizer):
    """Presidio's IBAN recognizer for any case and one separator kind; mod-97 and format decide, except for
    values that plainly are an IBAN (see the module docstring), reported with a lower score."""

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(supported_language=supported_language, name="SeparatedIbanRecognizer")

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None, regex_flags: int | None = None
    ) -> list[RecognizerResult]:
        if self.supported_entities[0] not in entities:
            return []
        valid: list[tuple[int, int]] = []
        shaped: list[tuple[int, int]] = []
        for run in _IBAN_RUN.finditer(text):
            candidates = stretches(text, run.start(), run.end(), IBAN_LENGTHS, from_first_only=True)
            for s, e, value in candidates:
                if self.validate_result(value.upper()) is True:
                    valid.append((s, e))
                    break  # longest valid stretch from this country code
            else:
                before = text[max(0, run.start() - _IBAN_CONTEXT_BEFORE) : run.start()]
                if (span := iban_shaped(candidates, before)) is not None:
                    shaped.append(span)
        entity = self.supported_entities[0]
        return [
            make_result(self, entity, s, e, 1.0, "IBAN passing mod-97 and its country format")
            for s, e in _disjoint(valid)
        ] + [
            make_result(self, entity, s, e, CONTEXT_SCORE, "an IBAN by its country's format or the word IBAN")
            for s, e in shaped
        ]
