"""The rules for client-supplied identifiers, free of heavy imports (Ray's proxy loads this too):
charsets, card-shaped digit runs, and the keyed pseudonym that replaces an id that looks like PII.
serving/client_fields.py applies them (with the PII guard); serving/ray_ingress.py before Ray Serve.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

# The guard's hash key (serving/guard/config.py HASH_KEY_ENV), named here so that importing these rules
# does not import the guard package (Presidio, spaCy) into Ray's proxy.
HASH_KEY_ENV = "FINSERVE_PII_HASH_KEY"

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TENANT = re.compile(r"[A-Za-z0-9._:-]{1,64}")
ADAPTER = re.compile(r"[a-z0-9._-]{1,63}@[0-9A-Za-z.+-]{1,64}")
INVALID_HEADER_MARK = "x-finserve-invalid-header"
"""Set by serving/ray_ingress.py when it had to rewrite a header Ray Serve reads first (x-request-id)."""
MAX_OPAQUE_ID = 256
"""Longest session key or ``user`` accepted (they are hashed, so only abuse is bounded here)."""

_DIGIT_RUN = re.compile(r"\d(?:[._:\- ]?\d)+")
MIN_DIGITS_TO_SCAN = 6  # fewer digits than this cannot be a card, IBAN, phone, SSN or account number
# Used when FINSERVE_PII_HASH_KEY is unset: pseudonyms stay equal across replicas (canary routing stays
# sticky), but are then only as strong as an unkeyed hash. Production sets the key from a Secret.
_FALLBACK_KEY = b"finserve-client-id-v1"

RULES = {
    "x-request-id": "1-128 characters from A-Z a-z 0-9 . _ : -",
    "x-finserve-tenant": "1-64 characters from A-Z a-z 0-9 . _ : -",
    "x-finserve-adapter": "NAME@VERSION (lower-case name, semantic version)",
    "id": "1-128 characters from A-Z a-z 0-9 . _ : -",
}


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_shaped(lengths: list[int]) -> bool:
    """Group lengths a card number is written in: one run, equal groups of 1-3 digits, 4-4-4-4 (+3),
    4-4-4-3, or Amex / Diners 4-6-5 / 4-6-4. A UUID's groups (8-4-4-4-12) never fit."""
    if len(lengths) == 1 or lengths in ([4, 6, 5], [4, 6, 4]):
        return True
    first, *middle, last = lengths
    if any(n != first for n in middle):
        return False
    if first <= 3:
        return last <= first
    return first == 4 and (last == 4 or (last == 3 and len(lengths) in (4, 5)))


def holds_card_number(value: str) -> bool:
    """A card-shaped run of 13-19 digits that passes Luhn, with ``._:-`` or spaces between its groups
    (``4458.5630.7407.7526``, ``4-4-5-8...``); other shapes are left to the guard, so opaque ids are not
    refused by chance."""
    for run in _DIGIT_RUN.finditer(value):
        groups = re.split(r"[._:\- ]", run.group())
        for i in range(len(groups)):
            for j in range(i + 1, len(groups) + 1):
                part = groups[i:j]
                digits = "".join(part)
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and _card_shaped([len(g) for g in part]) and luhn_valid(digits):
                    return True
    return False


def pseudonym(value: str, key: bytes | None = None) -> str:
    """``u_`` + 16 hex digits of HMAC-SHA256 over the value: stable per key, one-way."""
    key = key if key is not None else (os.environ.get(HASH_KEY_ENV, "").encode() or _FALLBACK_KEY)
    digest = hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return f"u_{digest[:16]}"
