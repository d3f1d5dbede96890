"""Whether a failure may be answered by the fallback, and which curated answer it is (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import map_error

# Client errors are the client's to fix; an audit failure must never be papered over with an answer.
_NEVER = {"audit_unavailable", "prompt_too_long", "adapter_not_found"}


def degradable(exc: BaseException) -> bool:
    """True when the generator failed on its side: down, shed (overloaded), slow (deadline) or broken.
    Anything that maps to a 5xx (BackendUnavailable and its subclasses, engine errors, a dead replica's
    unknown error, DeadlineExceeded) qualifies; 4xx errors and a failed audit do not."""
    mapped = map_error(exc)
    return mapped.status >= 500 and mapped.code not in _NEVER


def curated_answer(hits: Sequence[tuple[str, str]], intent: str | None) -> str | None:
    """The guarded text of the answer of ``intent`` among the prompt's knowledge ``(text, intent)``
    pairs (held-back chunks already removed), or None when retrieval did not bring it."""
    if intent is None:
        return None
    for text, hit_intent in hits:
        if hit_intent == intent:
            return text
    return None
