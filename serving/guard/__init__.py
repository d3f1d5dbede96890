"""The PII guard: Presidio analyzer + anonymizer under one policy, for input, context and output.

    guard = PIIGuard(GuardConfig(policies={"CREDIT_CARD": EntityAction.block}))
    result = guard.scan("my card is 4111 1111 1111 1111")
    result.text, result.findings, result.blocked

See docs/pii.md for the entity list, the actions and what is and isn't caught.
"""

from .config import DEFAULT_ENTITIES, HASH_KEY_ENV, EntityAction, GuardConfig
from .engine import Finding, GuardResult, PIIGuard
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
