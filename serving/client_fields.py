"""Every value a client sends besides the message text, made safe before anything records it.

The request id, tenant, adapter override, session / user keys and the OpenAI ``user`` field reach the
audit log, metrics labels, log lines and response headers. So each one is checked at the ingress
(HTTP headers and gRPC metadata alike) before the pipeline sees it:

- a strict charset and length, or a 400 naming the field (the value itself is never echoed or stored);
- values that pass but hold something the PII guard (or a Luhn check over card-shaped digits) finds:
  a tenant or adapter is refused the same way; a request id is replaced by its pseudonym;
- session keys and ``user`` are opaque end-user ids (often an email): they are replaced at once by a
  keyed SHA-256 pseudonym, which still keeps canary routing sticky;
- metrics get bounded label values (serving/metrics.py): a tenant not configured collapses into ``other``.

Zero-width characters, full-width and Arabic-Indic digits fail the ASCII charset, so they cannot hide
a number from these checks.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import InvalidRequest
from .guard.config import HASH_KEY_ENV
from .pipeline import RequestContext
from .stages import GuardStage

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TENANT = re.compile(r"[A-Za-z0-9._:-]{1,64}")
ADAPTER = re.compile(r"[a-z0-9._-]{1,63}@[0-9A-Za-z.+-]{1,64}")
MAX_OPAQUE_ID = 256
"""Longest session key or ``user`` accepted (they are hashed, so only abuse is bounded here)."""

_DIGIT_RUN = re.compile(r"\d(?:[._:\- ]?\d)+")
_MIN_DIGITS_TO_SCAN = 6  # fewer digits than this cannot be a card, IBAN, phone, SSN or account number
# Used when FINSERVE_PII_HASH_KEY is unset: pseudonyms stay equal across replicas (canary routing stays
# sticky), but are then only as strong as an unkeyed hash. Production sets the key from a Secret.
_FALLBACK_KEY = b"finserve-client-id-v1"

_RULES = {
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


def invalid_field(field: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"{field}: {why}", param=field)


def pii_field(field: str) -> InvalidRequest:
    return invalid_field(field, "rejected: it looks like personal data (a card, account or phone number, or "
                                "similar); send an opaque identifier")


def pseudonym(value: str, key: bytes | None = None) -> str:
    """``u_`` + 16 hex digits of HMAC-SHA256 over the value: stable per key, one-way."""
    key = key if key is not None else (os.environ.get(HASH_KEY_ENV, "").encode() or _FALLBACK_KEY)
    digest = hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return f"u_{digest[:16]}"


@dataclass
class ClientFields:
    """The ingress check of client identifiers, with the guard that screens them for PII."""

    guard: GuardStage
    default_tenant: str
    key: bytes | None = None

    def hash_id(self, value: str) -> str:
        return pseudonym(value, self.key)

    async def flagged(self, values: Mapping[str, str]) -> set[str]:
        """The fields whose value holds a card number or anything the guard finds."""
        out = {f for f, v in values.items() if holds_card_number(v)}
        todo = [(f, v) for f, v in values.items()
                if f not in out and sum(c.isdigit() for c in v) >= _MIN_DIGITS_TO_SCAN]
        if todo:
            results = await self.guard.scan_many([v for _, v in todo])
            out |= {f for (f, _), r in zip(todo, results, strict=True) if r.findings}
        return out

    async def context(self, headers: Mapping[str, str]) -> tuple[RequestContext, InvalidRequest | None]:
        """The request's context from HTTP headers or gRPC metadata (lower-case keys), and the first
        problem with them. The context only ever holds values that passed (or their pseudonyms), so a
        rejected request can still be audited and answered with it."""
        ctx = RequestContext(tenant=self.default_tenant)
        error: InvalidRequest | None = None
        checks = (("x-request-id", REQUEST_ID), ("x-finserve-tenant", TENANT), ("x-finserve-adapter", ADAPTER))
        passed: dict[str, str] = {}
        for field, pattern in checks:
            value = headers.get(field)
            if value is None:
                continue
            if pattern.fullmatch(value):
                passed[field] = value
            else:
                error = error or invalid_field(field, f"must be {_RULES[field]}")
        for field in ("x-finserve-session", "x-user-id"):
            value = headers.get(field)
            if value is None:
                continue
            if not value or len(value) > MAX_OPAQUE_ID:
                error = error or invalid_field(field, f"must be 1-{MAX_OPAQUE_ID} characters")
            elif ctx.sticky_key is None:
                ctx.sticky_key = self.hash_id(value)
        bad = await self.flagged(passed)
        for name in ("x-finserve-tenant", "x-finserve-adapter"):
            if name in bad:
                error = error or pii_field(name)
        if "x-request-id" in passed:
            # An id that looks like personal data is still a usable id once pseudonymised: the response
            # header then carries the pseudonym, so nothing raw is echoed, logged or audited.
            rid = passed["x-request-id"]
            ctx.request_id = self.hash_id(rid) if "x-request-id" in bad else rid
        if "x-finserve-tenant" in passed and "x-finserve-tenant" not in bad:
            ctx.tenant = passed["x-finserve-tenant"]
        if "x-finserve-adapter" in passed and "x-finserve-adapter" not in bad:
            ctx.adapter_override = passed["x-finserve-adapter"]
        return ctx, error

    async def request_id(self, field: str, value: str | None) -> str | None:
        """A request id carried in the body (OIP ``id``): the rules of x-request-id; returns the id to
        use (its pseudonym when it looks like personal data)."""
        if value is None or value == "":
            return None
        if not REQUEST_ID.fullmatch(value):
            raise invalid_field(field, f"must be {_RULES['id']}")
        return self.hash_id(value) if await self.flagged({field: value}) else value

    async def adapter_ref(self, field: str, value: str) -> str:
        """An adapter NAME@VERSION named in a request field (gRPC ``model_version``)."""
        if not ADAPTER.fullmatch(value):
            raise invalid_field(field, f"must be {_RULES['x-finserve-adapter']}")
        if await self.flagged({field: value}):
            raise pii_field(field)
        return value

    def user(self, value: str | None, field: str = "user") -> str | None:
        """The OpenAI ``user`` field (an end-user id, often an email): bounded, then pseudonymised."""
        if value is None:
            return None
        if not value or len(value) > MAX_OPAQUE_ID:
            raise invalid_field(field, f"must be 1-{MAX_OPAQUE_ID} characters")
        return self.hash_id(value)

