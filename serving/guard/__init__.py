"""The PII guard: Presidio analyzer + anonymizer under one policy, for input, context and output.

    guard = PIIGuard(GuardConfig(policies={"CREDIT_CARD": EntityAction.block}))
    result = guard.scan("my card is 4111 1111 1111 1111")
    result.text, result.findings, result.blocked

See docs/pii.md for the entity list, the actions and what is and isn't caught.

``PIIGuard`` and ``GuardConfigError`` are imported on first use: they load Presidio and spaCy (about 180 MB
resident), which a process that only reads the guard's config or results (every replica but the Guard's)
does not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import DEFAULT_ENTITIES, HASH_KEY_ENV, EntityAction, GuardConfig
from .results import Finding, GuardResult

if TYPE_CHECKING:
    from .engine import PIIGuard
    from .nlp import GuardConfigError

__all__ = [
    "DEFAULT_ENTITIES",
    "HASH_KEY_ENV",
    "EntityAction",
    "Finding",
    "GuardConfig",
    "GuardConfigError",
    "GuardResult",
    "PIIGuard",
]


def __getattr__(name: str) -> Any:
    if name == "PIIGuard":
        from .engine import PIIGuard

        return PIIGuard
    if name == "GuardConfigError":
        from .nlp import GuardConfigError

        return GuardConfigError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
