"""Guarding a token stream: release text only once the guard can see all of any PII in it.

A card number or IBAN arrives over several tokens. The releaser holds back the last
``holdback`` characters, cuts only at whitespace, never inside a finding, and releases the
guarded version of what lies before the cut. 64 characters covers the longest structured entity
(an IBAN with spaces is at most 42).

A number can be longer than that once obfuscated ("four four five eight five six ..." or
"4458 . 5630 . 7407 . 7526"), so a run of digits, digit words and separators still open at the
end of the stream is never released, however long, until text that cannot continue it arrives (or
the run passes ``max_open`` characters, far beyond any entity): only then can the guard judge it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .guard.normalise import open_tail_start
from .guard.results import GuardResult

ScanMany = Callable[[list[str]], Awaitable[list[GuardResult]]]


class StreamReleaser:
    def __init__(
        self, scan_many: ScanMany, holdback: int = 64, min_release: int = 24, max_open: int = 320
    ) -> None:
        self._scan_many = scan_many
        self.holdback = holdback
        self.min_release = min_release
        self.max_open = max_open
        self.raw = ""
        self._released_upto = 0
        self.findings: dict[str, int] = {}

    async def feed(self, delta: str) -> str:
        """Add generated text; return guarded text safe to send now (may be empty)."""
        self.raw += delta
        # An open number at the end stays back; only its part older than max_open may go.
        start = max(self._released_upto, len(self.raw) - self.max_open)
        pending = start + open_tail_start(self.raw[start:])
        limit = min(len(self.raw) - self.holdback, pending)
        if limit - self._released_upto < self.min_release:
            return ""
        # Find entities over everything unreleased, so none is cut in half by the release point.
        [window] = await self._scan_many([self.raw[self._released_upto :]])
        cut = self.raw.rfind(" ", self._released_upto, limit)
        spans = [(f.start + self._released_upto, f.end + self._released_upto) for f in window.findings]
        moved = True
        while moved and cut > self._released_upto:
            moved = False
            for start, end in spans:
                if start < cut < end:
                    cut = self.raw.rfind(" ", self._released_upto, start)
                    moved = True
        if cut <= self._released_upto:
            return ""
        return await self._release(cut)

    async def finish(self) -> str:
        """Release everything left at the end of the stream."""
        if self._released_upto >= len(self.raw):
            return ""
        return await self._release(len(self.raw))

    async def _release(self, cut: int) -> str:
        segment = self.raw[self._released_upto : cut]
        [result] = await self._scan_many([segment])
        for entity, n in result.counts().items():
            self.findings[entity] = self.findings.get(entity, 0) + n
        self._released_upto = cut
        return result.text
