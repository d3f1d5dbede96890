"""The normalised view the recognizers read, with a map back to the original text.

Customers and models write the same number many ways: full-width or Arabic-Indic digits, zero-width
characters inside it, "4 4 5 8", "4458 . 5630", "four four five eight", "jane dot doe at mail dot
com". The guard detects on one canonical spelling and masks the original characters, so every
rewrite here records, for each character of the view, the range of original characters it came
from. Pure functions, no Presidio.

The view keeps separators between digit groups (dates, amounts and phone shapes need them);
recognizers with a checksum (cards, IBANs) read through separators themselves.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

import regex as re

# Invisible characters that split a number without showing: zero-width space/joiners, word joiner,
# BOM, soft hyphen, and the bidi marks.
_INVISIBLE = frozenset(
    "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# Dashes NFKC leaves alone.
_DASHES = frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043\ufe58\ufe63\uff0d")

DIGIT_WORDS: dict[str, str] = {
    "zero": "0", "oh": "0", "nought": "0", "nil": "0",
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_REPEATS = {"double": 2, "triple": 3}
_WORD_ALT = "|".join(sorted(DIGIT_WORDS, key=len, reverse=True))
_TOKEN = rf"(?:(?:double|triple)[ \t]+(?:{_WORD_ALT})|{_WORD_ALT}|\d+)"
# A full stop followed by a blank ends a sentence, not a number ("since 2008. three one ...").
_TOKEN_SEP = r"(?:[ \t]*[,\-][ \t]*|[ \t]*\.(?![ \t])|[ \t]+)"
# A run of digit words and digit groups; rewritten only if it holds a word and three digits or more,
# so "one or two" and "two cards" stay as they are.
_NUMBER_RUN = re.compile(rf"(?i)(?<![\p{{L}}\d])(?:{_TOKEN})(?:{_TOKEN_SEP}(?:{_TOKEN}))*(?![\p{{L}}\d])")
_RUN_PART = re.compile(rf"(?i)(?P<tok>{_TOKEN})|(?P<sep>{_TOKEN_SEP})")
# Four or more single digits with single spaces between them ("4 4 5 8"): one number.
_SPACED_DIGITS = re.compile(r"(?<![\d.,])\d(?: \d){3,}(?![\d]|[.,]\d)")
# Blanks around one separator between digits ("4458 . 5630", "536 - 22"): the separator alone.
# A full stop with a blank only after it ends a sentence ("in 1995. 874 925 6084") and stays.
_LOOSE_SEPARATOR = re.compile(r"(?<=\d)(?:[ \t]+[.\-/][ \t]*|[ \t]*[\-/][ \t]+)(?=\d)")
# A spelled-out e-mail: local part, "at", a domain with at least one "dot".
_AT = r"(?:[ \t]*[\[(\{<][ \t]*at[ \t]*[\])\}>][ \t]*|[ \t]+at[ \t]+)"
_DOT = r"(?:[ \t]*[\[(\{<][ \t]*dot[ \t]*[\])\}>][ \t]*|[ \t]+dot[ \t]+|\.)"
_LABEL = r"[\p{L}\d_+\-]+"
_SPELLED_EMAIL = re.compile(
    rf"(?i)(?<![\p{{L}}\d_.+\-])(?P<local>{_LABEL}(?:{_DOT}{_LABEL})*)(?P<at>{_AT})"
    rf"(?P<domain>{_LABEL}(?:{_DOT}{_LABEL})+)(?![\p{{L}}\d_+\-@]|{_AT}|{_DOT}?[\p{{L}}\d_+\-]*(?:@|{_AT}))"
)
_DOT_WORD = re.compile(rf"(?i){_DOT}")
_NEEDS_EMAIL_PASS = re.compile(r"(?i)\b(?:at|dot)\b")
_NEEDS_WORD_PASS = re.compile(rf"(?i)\b(?:{_WORD_ALT})\b")


class MappedText:
    """A text plus, for each character, the [start, end) of the original characters it stands for."""

    __slots__ = ("text", "_starts", "_ends", "_length")

    def __init__(self, text: str, starts: list[int] | None = None, ends: list[int] | None = None) -> None:
        self.text = text
        self._starts = starts  # None: identity map
        self._ends = ends
        self._length = len(text) if starts is None else (ends[-1] if ends else 0)

    @classmethod
    def of(cls, text: str) -> MappedText:
        return cls(text)

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The original range covering view characters [start, end)."""
        if self._starts is None or self._ends is None:
            return start, end
        if end <= start:
            return self._starts[start] if start < len(self._starts) else self._length, self._length
        return self._starts[start], self._ends[end - 1]

    def _maps(self) -> tuple[list[int], list[int]]:
        if self._starts is None or self._ends is None:
            n = len(self.text)
            return list(range(n)), list(range(1, n + 1))
        return self._starts, self._ends

    def rewrite(
        self, pattern: re.Pattern[str], replace: Callable[[re.Match[str]], list[tuple[str, int, int]]]
    ) -> MappedText:
        """Rewrite every match of `pattern`. `replace` returns pieces (text, start, end) with start
        and end relative to the view, so a piece can keep a finer map than the whole match."""
        matches = list(pattern.finditer(self.text))
        if not matches:
            return self
        starts, ends = self._maps()
        out: list[str] = []
        new_starts: list[int] = []
        new_ends: list[int] = []
        pos = 0
        for m in matches:
            out.append(self.text[pos : m.start()])
            new_starts.extend(starts[pos : m.start()])
            new_ends.extend(ends[pos : m.start()])
            for piece, p_start, p_end in replace(m):
                if not piece:
                    continue
                lo, hi = starts[p_start], ends[p_end - 1]
                out.append(piece)
                new_starts.extend([lo] * len(piece))
                new_ends.extend([hi] * len(piece))
            pos = m.end()
        out.append(self.text[pos:])
        new_starts.extend(starts[pos:])
        new_ends.extend(ends[pos:])
        return MappedText("".join(out), new_starts, new_ends)


def _per_character(text: str) -> MappedText:
    """NFKC per character, every Unicode decimal digit as ASCII, invisible characters dropped."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for i, ch in enumerate(text):
        if ch.isascii():
            piece = ch
        elif ch in _INVISIBLE:
            continue
        elif ch in _DASHES:
            piece = "-"
        else:
            digit = unicodedata.decimal(ch, None)
            piece = str(digit) if digit is not None else unicodedata.normalize("NFKC", ch)
        out.append(piece)
        starts.extend([i] * len(piece))
        ends.extend([i + 1] * len(piece))
    return MappedText("".join(out), starts, ends)


def _unchanged(m: re.Match[str]) -> list[tuple[str, int, int]]:
    return [(ch, m.start() + i, m.start() + i + 1) for i, ch in enumerate(m.group())]


def _number_run(m: re.Match[str]) -> list[tuple[str, int, int]]:
    run = m.group()
    if not _NEEDS_WORD_PASS.search(run):
        return _unchanged(m)
    pieces: list[tuple[str, int, int]] = []
    digits = 0
    for part in _RUN_PART.finditer(run):
        start, end = m.start() + part.start(), m.start() + part.end()
        token = part.group("tok")
        if token is None:
            sep = part.group().strip()
            # Blanks between spelled digits go; a comma, dash or dot between groups becomes a dash.
            pieces.append(("-" if sep else "", start, end))
            continue
        words = token.lower().split()
        if words[0] in _REPEATS:
            value = DIGIT_WORDS[words[-1]] * _REPEATS[words[0]]
        else:
            value = DIGIT_WORDS.get(words[0], token)
        digits += len(value)
        pieces.append((value, start, end))
    if digits < 3:
        return _unchanged(m)
    return pieces


def _spaced_digits(m: re.Match[str]) -> list[tuple[str, int, int]]:
    return [(m.group()[i], m.start() + i, m.start() + i + 1) for i in range(0, len(m.group()), 2)]


def _loose_separator(m: re.Match[str]) -> list[tuple[str, int, int]]:
    sep = m.group().strip()
    offset = m.group().index(sep)
    return [(sep, m.start() + offset, m.start() + offset + 1)]


def _spelled_email(m: re.Match[str]) -> list[tuple[str, int, int]]:
    pieces: list[tuple[str, int, int]] = []
    for name in ("local", "at", "domain"):
        start, end = m.start(name), m.end(name)
        if name == "at":
            pieces.append(("@", start, end))
            continue
        pos = start
        for dot in _DOT_WORD.finditer(m.string, start, end):
            pieces.extend((m.string[i], i, i + 1) for i in range(pos, dot.start()))
            pieces.append((".", dot.start(), dot.end()))
            pos = dot.end()
        pieces.extend((m.string[i], i, i + 1) for i in range(pos, end))
    return pieces


def normalise(text: str) -> MappedText:
    """The view every recognizer reads; `original_span` maps its offsets back to `text`."""
    view = MappedText.of(text) if text.isascii() else _per_character(text)
    if _NEEDS_WORD_PASS.search(view.text):
        view = view.rewrite(_NUMBER_RUN, _number_run)
    view = view.rewrite(_SPACED_DIGITS, _spaced_digits)
    view = view.rewrite(_LOOSE_SEPARATOR, _loose_separator)
    if _NEEDS_EMAIL_PASS.search(view.text):
        view = view.rewrite(_SPELLED_EMAIL, _spelled_email)
    return view


# What an unfinished number may look like at the end of a stream: digits (any script), digit
# words, separators and invisible characters.
_OPEN_TAIL = re.compile(
    rf"(?i)(?:[(+][ \t]*)?(?:(?:\p{{Nd}}|(?<![\p{{L}}])(?:{_WORD_ALT}|double|triple)(?![\p{{L}}]))"
    rf"[\s.,\-/()+\u200b\u200c\u200d\u2060\ufeff\u00ad]*)+$"
)


def open_tail_start(text: str) -> int:
    """Where a number still being written at the end of `text` begins (len(text) if none).

    A streaming guard must not release any of it: the next token may complete a card."""
    m = _OPEN_TAIL.search(text)
    return m.start() if m else len(text)
