"""Phone numbers by their shape and the words around them, not by a numbering plan.

python-phonenumbers (Presidio's PhoneRecognizer) drops numbers no plan has assigned: unassigned
area codes, the UK's drama range (+44 7700 900xxx). A bank masks those all the same: a typo of a
real number is still that customer's number. This Presidio PatternRecognizer knows the shapes:

- international: ``+CC`` or ``00CC`` then groups, 8-15 digits (``+44 7651 511496``, ``0044 ...``);
- North American: ``(827) 324-5383``, ``(201)555-0142``, ``201.555.0142``, ``1-201-555-0142``;
- national with a trunk 0 (UK and most of the EU): ``020 7946 0958``, ``07700 900123``,
  ``06 12 34 56 78``, ``0151 23456789``, 10-12 digits;
- any other 9-11 digits in up to four groups (``612 345 678``, ``2015550142``), a trunk 0 and 7-9
  digits (``030 901820``) or a local 3-4 number (``555-0142``) only with a context word (phone, call,
  mobile, ...) near it: alone they are as likely an amount or reference.
"""

from __future__ import annotations

from typing import Any

import regex as re
from presidio_analyzer import Pattern, PatternRecognizer, RecognizerResult

ENTITY = "PHONE_NUMBER"

_B = r"(?<![\p{L}\d+.,/#])"  # not inside a word, a longer number, an amount, a date or a "#" reference
_E = r"(?![\p{L}\d]|[.,/]\d)"
PATTERNS = [
    Pattern(
        "international",
        rf"(?<![\p{{L}}\d+])(?:\+|00)[1-9]\d{{0,3}}(?:[ .\-]?\(0\))?(?:[ .\-]?\(?\d{{1,5}}\)?){{1,6}}{_E}",
        0.6,
    ),
    Pattern(
        "north_american",
        rf"{_B}(?:\+?1[ .\-]?)?(?:\([2-9]\d{{2}}\)[ \t]?|[2-9]\d{{2}}[ .\-])\d{{3}}[ .\-]\d{{4}}{_E}",
        0.5,
    ),
    Pattern(
        "national_trunk",
        rf"{_B}(?:\(0\d{{1,4}}\)|0\d{{1,4}})(?:[ .\-/]?\d{{2,8}})(?:[ .\-]\d{{2,8}}){{0,3}}{_E}",
        0.45,
    ),
    Pattern("grouped_digits", rf"{_B}\d{{2,4}}(?:[ .\-]?\d{{2,4}}){{1,3}}{_E}", 0.15),
]
# Digits each shape must hold (the regexes bound groups, not totals).
DIGITS: dict[str, range] = {
    "international": range(8, 17),
    "north_american": range(10, 12),
    "national_trunk": range(10, 13),
    "grouped_digits": range(9, 12),
}
# Shorter numbers of two shapes count only with a context word (their score is the weakest): a trunk 0
# and 7-9 digits (Berlin's "030 901820"), a local number of 7 ("555-0142"), never one unbroken run of digits
# (as likely a reference: "order 9004093"). Presidio keeps one
# match per span, the higher-scored pattern's, so the digit count decides here, after it.
SHORT_DIGITS: dict[str, range] = {"national_trunk": range(7, 10), "grouped_digits": range(7, 8)}
SHORT_SCORE = 0.15
CONTEXT = [
    "phone", "telephone", "tel", "mobile", "cell", "cellphone", "call", "ring", "reach", "contact",
    "whatsapp", "text", "sms", "landline", "number", "fax", "dial", "callback",
]  # fmt: skip

# Seven digits, possibly split by separators: the least any phone number has.
_HINT = re.compile(r"\d(?:[\s().\-/]{0,3}\d){6}")


class PhoneShapeRecognizer(PatternRecognizer):
    """Presidio PatternRecognizer for phone shapes; see module docstring."""

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            supported_entity=ENTITY,
            patterns=PATTERNS,
            context=CONTEXT,
            supported_language=supported_language,
            name="PhoneShapeRecognizer",
        )

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None, regex_flags: int | None = None
    ) -> list[RecognizerResult]:
        if ENTITY not in entities or not _HINT.search(text):
            return []
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        kept = []
        for result in results:
            name = result.analysis_explanation.pattern_name if result.analysis_explanation else None
            digits = sum(ch.isdigit() for ch in text[result.start : result.end])
            if name in DIGITS and digits in DIGITS[name]:
                kept.append(result)
            elif (
                name in SHORT_DIGITS
                and digits in SHORT_DIGITS[name]
                and not text[result.start : result.end].isdigit()
            ):
                result.score = SHORT_SCORE
                kept.append(result)
        return kept
