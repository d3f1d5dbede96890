"""Remembers guard results for retrieved knowledge chunks.

The knowledge base is a few hundred fixed texts, so the context pass scans the same chunks over and
over. Only chunk texts are cached, keyed by their sha256, never user input: a cache keyed by what a
customer typed would hold their PII.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

from .results import GuardResult


class ChunkGuardCache:
    def __init__(self, scan_many: Callable[[list[str]], list[GuardResult]], max_entries: int = 4096) -> None:
        self._scan_many = scan_many
        self._max = max_entries
        self._entries: OrderedDict[str, GuardResult] = OrderedDict()

    def scan_chunks(self, texts: list[str]) -> list[GuardResult]:
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        missing = [i for i, k in enumerate(keys) if k not in self._entries]
        if missing:
            fresh = self._scan_many([texts[i] for i in missing])
            for i, result in zip(missing, fresh, strict=True):
                self._entries[keys[i]] = result
        out = []
        for k in keys:
            self._entries.move_to_end(k)
            out.append(self._entries[k])
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return out
