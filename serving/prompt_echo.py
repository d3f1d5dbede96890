"""Whether an answer repeats the assistant's instructions (the configured system prompt) back to the customer.

The small model sometimes answers a question it finds odd with its own instructions, word for word ("You are the
customer assistant of a bank. Answer the customer's question briefly ..."): useless to the customer, and it
shows how the assistant is steered. Any run of :data:`WINDOW` consecutive words of the instructions in an answer
counts (words lower-cased, punctuation ignored); shorter overlaps ("the customer", "the knowledge below") are
ordinary language. Knowledge chunks are not checked: repeating them is what grounded answers do. Pure: no I/O.
"""

from __future__ import annotations

import re

WINDOW = 8
# Characters before a stream's newest piece that can hold the start of a run ending in it: 8 words of the
# instructions take about 60; 25 a word leaves room for the longest of them.
_SPAN = 25 * WINDOW
_WORD = re.compile(r"\w+(?:['’]\w+)*")


def _shingles(text: str, n: int) -> set[tuple[str, ...]]:
    words = [w.lower() for w in _WORD.findall(text)]
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class EchoCheck:
    """Built once per instructions text; :meth:`found` is called on every generated piece of a stream."""

    def __init__(self, instructions: str, window: int = WINDOW) -> None:
        if window < 2:
            raise ValueError("window must be at least 2 words")
        self.window = window
        self._runs = _shingles(instructions, window)

    def found(self, text: str) -> bool:
        """True when ``text`` holds ``window`` consecutive words of the instructions."""
        return bool(self._runs) and not self._runs.isdisjoint(_shingles(text, self.window))

    def found_at_end(self, text: str, new: int) -> bool:
        """:meth:`found` for a stream, on each piece: only runs ending in the last ``new`` characters can be new,
        so only the tail is read (``window`` words of the instructions span well under :data:`_SPAN` characters),
        and its first, possibly cut, word is dropped. Keeps the check per piece independent of the answer's
        length."""
        start = max(0, len(text) - new - _SPAN)
        parts = text[start:].split(maxsplit=1) if start else ["", text]
        return self.found(parts[1] if len(parts) > 1 else "")
