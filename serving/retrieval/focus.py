"""The part of a customer's message that says what they want: the text retrieval and the intent head read.

Customers open with a greeting and introduce themselves ("Hello, Priya Sharma here. My top-up keeps failing");
after the input guard that is "Hello, <PERSON> here. ...". The greeting and the introduction say nothing about
the question, but they move its embedding: on 40 own-words questions with such an opening, 3 answers changed
and one question was turned away as out of scope. So the search text drops a leading greeting, a leading
self-introduction whose name the guard replaced, and a trailing sign-off with such a name. The prompt keeps the
whole masked message (the model may greet back); only what is searched and classified is focused. Pure.
"""

from __future__ import annotations

import regex as re

# What the guard's replace and hash actions leave for a value: "<PERSON>", "<PERSON:3f2a9c1b>".
_PLACEHOLDER = r"<[A-Z][A-Z_]*(?::[0-9a-f]+)?>"
_GREETING = (
    r"(?:hi|hello|hey|hiya|heya|greetings|good\s+(?:morning|afternoon|evening|day)|morning|afternoon|evening"
    r"|dear\s+(?:sir|madam|sir\s+or\s+madam|team|support|bank|all))(?:\s+(?:there|team|all|guys|everyone|support))?"
)
_INTRODUCTION = (
    rf"(?:(?:my\s+name\s+is|my\s+name['’]s|this\s+is|i\s+am|i['’]m|im|it['’]?s|it\s+is)\s+{_PLACEHOLDER}"
    r"(?:\s+(?:here|speaking))?"
    rf"|{_PLACEHOLDER}\s+(?:here|speaking))"
)
# A greeting counts when punctuation or an introduction follows it: "Evening withdrawals are blocked" keeps its word.
_LEADING_GREETING = re.compile(rf"(?i)^\s*{_GREETING}(?:\s*[,!.:;\-]+\s*|\s+(?=(?-i:{_INTRODUCTION})))")
_LEADING_INTRODUCTION = re.compile(rf"(?i)^(?-i:{_INTRODUCTION})(?:\s*[,!.:;\-]+\s*|\s+and\s+|\s+|$)")
_SIGN_OFF = re.compile(
    rf"(?i)[\s,.!]*(?:(?:many\s+)?thanks|thank\s+you|regards|kind\s+regards|best|cheers)?[\s,.!\-]*"
    rf"(?-i:{_PLACEHOLDER})[\s.!]*$"
)


def focus(text: str) -> str:
    """``text`` without a leading greeting and self-introduction and a trailing signed sign-off; ``text`` itself
    when nothing else would be left."""
    rest, before = text, None
    while rest != before:  # "Good morning, my name is <PERSON>. Good afternoon. ..."
        before = rest
        for opening in (_LEADING_GREETING, _LEADING_INTRODUCTION):
            if m := opening.match(rest):
                rest = rest[m.end() :]
    if (signed := _SIGN_OFF.search(rest)) and signed.start() > 0:
        rest = rest[: signed.start()]
    return rest.strip() or text
