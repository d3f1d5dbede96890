"""Values split across the texts of one conversation: which pairs to join, and how to split back.

"my card is 4458 5630" in one turn and "7407 7526" in a later one is one card; "my password is" in
one and "Hunter2" in the next is one password. Scanning every pair of turns joined would cost a scan
per pair, so a pair is joined only when the earlier text ends with something unfinished (digits,
digit words, a name cue, an e-mail's "@", a keyword waiting for its value) and the later one starts
with something that could finish it. The join is the earlier text's tail, one space, and
the later text's head; what is found there is mapped back to each text. Pure: no Presidio.
"""

from __future__ import annotations

from typing import NamedTuple

import regex as re

from .finder_recognizer import IS_CONTRACTED
from .normalise import DIGIT_WORDS, open_tail_start
from .spans import Span

WINDOW = 120  # characters of each side kept in a join: the longest entity with its context words
MAX_PAIRS = 8  # a bound on the extra scans of one conversation
# How far apart two joined texts may be: a user turn, the assistant's answer, the next user turn,
# with the system message before them.
MAX_GAP = 3

_WORDS = "|".join(DIGIT_WORDS)
_HEAD_DIGITS = re.compile(rf"(?i)^\s*[\-./)]?\s*(?:[(+]?\p{{Nd}}|(?:{_WORDS}|double|triple)\b)")
# The start of an IBAN (country code, check digits, maybe some groups) left open at the end.
_TAIL_IBAN = re.compile(r"(?i)(?<![\p{L}\d])[a-z]{2}\d{2}(?>(?:[ \-.]?[a-z\d]{1,4})*)[ \-.]?$")
_HEAD_ALNUM = re.compile(r"^\s*[\-.]?\s*[\p{L}\d]")
_TAIL_NAME_CUE = re.compile(
    r"(?i)(?:\bname(?:\s+is|['’]s)?|\bholder(?:\s+is)?|\bbeneficiary|\bpayee|\bregards|\bsincerely|\bthanks"
    r"|\bi\s+am|\bi['’]m|\bthis\s+is|\bcall\s+me)\s*[:,\-]?\s*$"
)
_HEAD_NAME = re.compile(r"^\s*\p{Lu}")
# A keyword left waiting for its value ("my password is", "date of birth:", "my address is"; not "... is my
# address", which ends a sentence); the value may be any word, so the head only needs a letter or digit.
_TAIL_KEYWORD = re.compile(
    r"(?i)\b(?:password|passwd|pwd|pw|passcode|pin|cvv|cvc|memorable\s+(?:word|information)|security\s+(?:code|answer)"
    r"|otp|one[\s\-]time\s+code|verification\s+code|user\s?name|user\s?id|login|date\s+of\s+birth|dob|d\.o\.b\.?"
    r"|birthday|born(?:\s+on)?|address|post\s?code|zip\s?code|ni\s+number|national\s+insurance\s+number"
    r"|passport\s+number|licen[cs]e\s+number|id\s+number|account\s+number|acct|sort\s+code|ssn"
    rf"|social\s+security\s+number|card\s+number|maiden\s+name)(?:\s+(?:is|was)|{IS_CONTRACTED}|\s*[:#=\-])\s*$"
)
# An e-mail cut at its "@" or "at": a local part and the at-sign (or word) ending the tail, and a
# domain starting the head.
_TAIL_EMAIL = re.compile(r"(?i)[\p{L}\d._+\-]+(?:@|[ \t]*[\[(]at[\])]|[ \t]+at)[\p{L}\d\-]*\s*$")
_HEAD_EMAIL = re.compile(r"(?i)^\s*(?:@|at\b|[\[(]at[\])])?\s*[\p{L}\d\-]+(?:\.|\s+dot\s+|\s*[\[(]dot[\])])")


class Join(NamedTuple):
    first: int  # index of the earlier text
    second: int  # index of the later text
    text: str  # the earlier text's tail + " " + the later text's head, blanks at the seam dropped
    cut: int  # offset of the joining space in `text`
    tail_offset: int  # where the tail starts in the earlier text
    head_offset: int  # where the head starts in the later text


Openings = tuple[bool, bool, bool, bool, bool]


def _tail_open(text: str) -> Openings:
    tail = text[-WINDOW:].rstrip()
    return (
        open_tail_start(tail) < len(tail),
        _TAIL_NAME_CUE.search(tail) is not None,
        _TAIL_EMAIL.search(tail) is not None,
        _TAIL_IBAN.search(tail) is not None,
        _TAIL_KEYWORD.search(tail) is not None,
    )


def _head_open(text: str) -> Openings:
    head = text[:WINDOW]
    alnum = _HEAD_ALNUM.match(head) is not None
    return (
        _HEAD_DIGITS.match(head) is not None,
        _HEAD_NAME.match(head) is not None,
        _HEAD_EMAIL.match(head) is not None,
        alnum,
        alnum,
    )


def joins(texts: list[str]) -> list[Join]:
    """The pairs (earlier, later) worth scanning joined, at most MAX_GAP apart, nearest first, at
    most MAX_PAIRS."""
    closed = (False, False, False, False, False)
    tails = [_tail_open(t) if t.strip() else closed for t in texts]
    heads = [_head_open(t) if t.strip() else closed for t in texts]
    pairs = [
        (i, j)
        for gap in range(1, min(len(texts), MAX_GAP + 1))
        for i in range(len(texts) - gap)
        for j in (i + gap,)
        if any(a and b for a, b in zip(tails[i], heads[j], strict=True))
    ][:MAX_PAIRS]
    out = []
    for i, j in pairs:
        tail_offset = max(0, len(texts[i]) - WINDOW)
        tail = texts[i][tail_offset:].rstrip()
        head = texts[j][:WINDOW]
        head_offset = len(head) - len(head.lstrip())
        out.append(Join(i, j, f"{tail} {head.lstrip()}", len(tail), tail_offset, head_offset))
    return out


def split_back(join: Join, spans: list[Span]) -> list[tuple[int, Span]]:
    """(text index, span in that text) for each finding of a join, split at the join.

    A finding wholly inside one side counts too: it may need the other side's words ("Beneficiary
    name:" then "Hannah Adeyemi" in the next turn)."""
    parts: list[tuple[int, Span]] = []
    head_start = join.cut + 1
    shift = join.head_offset - head_start
    for span in spans:
        if span.start < join.cut:
            end = min(span.end, join.cut)
            parts.append(
                (join.first, span._replace(start=span.start + join.tail_offset, end=end + join.tail_offset))
            )
        if span.end > head_start:
            start = max(span.start, head_start)
            parts.append((join.second, span._replace(start=start + shift, end=span.end + shift)))
    return parts
