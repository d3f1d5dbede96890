"""What each policy action writes in place of a finding: pure functions of the matched text.

The HMAC key arrives as an argument; where it comes from is keys.py's job.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable

from .config import EntityAction, GuardConfig
from .normalise import normalise

Operator = Callable[[str], str]

_SEPARATORS = re.compile(r"[\s\-().]+")


def replace_token(entity_type: str) -> str:
    return f"<{entity_type}>"


def normalise_for_hash(value: str) -> str:
    """One spelling per value, so '4111-1111-...' and '4111 1111 ...' get the same pseudonym.

    Read through the guard's normalised view first (full-width or Arabic-Indic digits, zero-width
    characters, digit words), then numbers lose their separators; everything else is lowercased
    with whitespace collapsed.
    """
    value = normalise(value).text
    compact = _SEPARATORS.sub("", value)
    if compact.lstrip("+").isdigit():
        return compact
    return " ".join(value.lower().split())


def pseudonym(entity_type: str, value: str, key: bytes, length: int) -> str:
    """``<TYPE:hex>``: HMAC-SHA256 of the normalised value, truncated to `length` hex digits."""
    digest = hmac.new(key, normalise_for_hash(value).encode("utf-8"), hashlib.sha256).hexdigest()
    return f"<{entity_type}:{digest[:length]}>"


def mask(value: str, char: str, keep_last: int) -> str:
    # Values no longer than keep_last are masked whole: leaving all of them visible would leak them.
    keep = keep_last if len(value) > keep_last else 0
    return char * (len(value) - keep) + (value[len(value) - keep :] if keep else "")


def operator_for(entity_type: str, config: GuardConfig, key: bytes) -> Operator:
    """The function that rewrites one finding of `entity_type` under `config`'s policy."""
    action = config.action_for(entity_type)
    if action is EntityAction.replace or action is EntityAction.block:
        token = replace_token(entity_type)
        return lambda _value: token
    if action is EntityAction.redact:
        return lambda _value: ""
    if action is EntityAction.mask:
        return lambda value: mask(value, config.mask_char, config.mask_keep_last)
    if action is EntityAction.hash:
        return lambda value: pseudonym(entity_type, value, key, config.hash_length)
    raise ValueError(f"unhandled action {action!r}")
