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

from collections.abc import Mapping
from dataclasses import dataclass

from .client_ids import (
    ADAPTER,
    INVALID_HEADER_MARK,
    MAX_OPAQUE_ID,
    MIN_DIGITS_TO_SCAN,
    REQUEST_ID,
    RULES,
    TENANT,
    holds_card_number,
    pseudonym,
)
from .errors import InvalidRequest, invalid_field
from .pipeline import RequestContext
from .stages import GuardStage
from .telemetry.request import attach


def pii_field(field: str) -> InvalidRequest:
    return invalid_field(
        field,
        "rejected: it looks like personal data (a card, account or phone number, or "
        "similar); send an opaque identifier",
    )


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
        todo = [
            (f, v)
            for f, v in values.items()
            if f not in out and sum(c.isdigit() for c in v) >= MIN_DIGITS_TO_SCAN
        ]
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
        if headers.get(INVALID_HEADER_MARK) == "x-request-id":
            error = invalid_field("x-request-id", f"must be {RULES['x-request-id']}")
        checks = (
            ("x-request-id", REQUEST_ID),
            ("x-finserve-tenant", TENANT),
            ("x-finserve-adapter", ADAPTER),
        )
        passed: dict[str, str] = {}
        for field, pattern in checks:
            value = headers.get(field)
            if value is None:
                continue
            if pattern.fullmatch(value):
                passed[field] = value
            else:
                error = error or invalid_field(field, f"must be {RULES[field]}")
        deadline = headers.get("x-finserve-deadline-ms")
        if deadline is not None:
            if deadline.isascii() and deadline.isdigit() and 0 < len(deadline) <= 7 and int(deadline) > 0:
                ctx.deadline_ms = int(deadline)  # clamped to the configured bounds by the pipeline
            else:
                error = error or invalid_field(
                    "x-finserve-deadline-ms", "must be a whole number of milliseconds, 1-9999999"
                )
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
        attach(ctx, headers)  # trace id (server span or a valid traceparent: hex only) and log fields
        return ctx, error

    async def request_id(self, field: str, value: str | None) -> str | None:
        """A request id carried in the body (OIP ``id``): the rules of x-request-id; returns the id to
        use (its pseudonym when it looks like personal data)."""
        if value is None or value == "":
            return None
        if not REQUEST_ID.fullmatch(value):
            raise invalid_field(field, f"must be {RULES['id']}")
        return self.hash_id(value) if await self.flagged({field: value}) else value

    async def adapter_ref(self, field: str, value: str) -> str:
        """An adapter NAME@VERSION named in a request field (gRPC ``model_version``)."""
        if not ADAPTER.fullmatch(value):
            raise invalid_field(field, f"must be {RULES['x-finserve-adapter']}")
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
