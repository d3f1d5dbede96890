"""Which adapter versions are loaded, under which internal name, and which one to unload next.

Pure bookkeeping, owned by the engine's event loop: least recently used first, never an adapter
that a queued or running request still needs (those are pinned).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, OrderedDict

from finserve.contracts import AdapterRef


def internal_name(ref: AdapterRef) -> str:
    """A module-safe, collision-free name for PEFT: '.' and '@' are not allowed in module names."""
    slug = re.sub(r"[^A-Za-z0-9_]", "_", str(ref))
    digest = hashlib.sha256(str(ref).encode()).hexdigest()[:8]
    return f"a_{slug}_{digest}"


class AdapterSlots:
    """LRU set of loaded adapters with pin counts."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._loaded: OrderedDict[AdapterRef, str] = OrderedDict()
        self._pins: Counter[AdapterRef] = Counter()

    def __contains__(self, ref: AdapterRef) -> bool:
        return ref.is_base or ref in self._loaded

    def loaded(self) -> list[AdapterRef]:
        return list(self._loaded)

    def name(self, ref: AdapterRef) -> str | None:
        """The internal name of a loaded adapter; None for the base model."""
        if ref.is_base:
            return None
        try:
            return self._loaded[ref]
        except KeyError:
            raise KeyError(f"adapter {ref} is not loaded") from None

    def touch(self, ref: AdapterRef) -> None:
        if ref in self._loaded:
            self._loaded.move_to_end(ref)

    def add(self, ref: AdapterRef) -> str:
        name = internal_name(ref)
        self._loaded[ref] = name
        self._loaded.move_to_end(ref)
        return name

    def remove(self, ref: AdapterRef) -> None:
        self._loaded.pop(ref, None)

    def pin(self, ref: AdapterRef) -> None:
        if not ref.is_base:
            self._pins[ref] += 1

    def unpin(self, ref: AdapterRef) -> None:
        if self._pins[ref] > 1:
            self._pins[ref] -= 1
        else:
            self._pins.pop(ref, None)

    def pinned(self, ref: AdapterRef) -> bool:
        return self._pins[ref] > 0

    def victims(self, incoming: int = 1) -> list[AdapterRef]:
        """Least recently used unpinned adapters to unload so ``incoming`` more fit.

        May return fewer than needed when the rest are pinned: capacity is then exceeded for a
        while rather than failing requests that are already admitted.
        """
        excess = len(self._loaded) + incoming - self.capacity
        out: list[AdapterRef] = []
        for ref in self._loaded:
            if len(out) >= excess:
                break
            if not self.pinned(ref):
                out.append(ref)
        return out
