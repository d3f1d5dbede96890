"""Turns one row's generated token ids into text deltas, honouring stop strings.

Pure logic: the tokenizer's decode is injected. Two things make streaming text subtle:
a token may end in the middle of a UTF-8 character (decode shows U+FFFD until the rest
arrives), and a stop string may arrive split over several tokens, so text that could be the
start of a stop string is held back until it is known not to be one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

REPLACEMENT_CHAR = "\ufffd"


def find_stop(text: str, stops: Sequence[str], start: int = 0) -> int | None:
    """Index of the earliest stop string occurring in ``text[start:]``, or None."""
    found = [i for i in (text.find(s, start) for s in stops if s) if i >= 0]
    return min(found) if found else None


def partial_stop_len(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of some stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


class TextAssembler:
    """Accumulates one completion: ``push`` each new token, ``finish`` at the end."""

    def __init__(self, decode: Callable[[list[int]], str], stops: Sequence[str] | None = None) -> None:
        self._decode = decode
        self._stops = [s for s in (stops or []) if s]
        self._ids: list[int] = []
        self.text = ""  # what has been emitted so far
        self.stopped = False

    @property
    def token_count(self) -> int:
        return len(self._ids)

    def push(self, token_id: int) -> str:
        """Add a generated token; return the text that may be emitted now (possibly empty).

        Sets ``stopped`` when a stop string appears; the text up to it is returned and
        nothing after it ever is.
        """
        if self.stopped:
            return ""
        self._ids.append(token_id)
        full = self._decode(self._ids)
        if full.endswith(REPLACEMENT_CHAR):
            return ""  # an incomplete UTF-8 sequence: wait for the next token
        # Held-back text is never emitted, so a stop string cannot start before len(self.text).
        at = find_stop(full, self._stops, len(self.text)) if self._stops else None
        if at is not None:
            self.stopped = True
            return self._emit(full[:at])
        return self._emit(full[: len(full) - partial_stop_len(full, self._stops)])

    def finish(self) -> str:
        """The generation ended (end token or length): release whatever was held back."""
        if self.stopped or not self._ids:
            return ""
        return self._emit(self._decode(self._ids))

    def _emit(self, upto: str) -> str:
        delta = upto[len(self.text) :] if upto.startswith(self.text) else ""
        if delta:
            self.text = upto
        return delta
