"""The ingress check of client identifiers, with the real Presidio guard (no model, no index)."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from finserve.serving.client_fields import ClientFields, holds_card_number, pseudonym
from finserve.serving.errors import InvalidRequest
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.metrics import tenant_label
from finserve.serving.stages import LocalGuard

CARD = "4458563074077526"  # Luhn-valid


@pytest.fixture(scope="module")
def fields() -> ClientFields:
    return ClientFields(LocalGuard(PIIGuard()), "default", key=b"k" * 32)


def context(fields: ClientFields, headers: dict[str, str]):
    return asyncio.run(fields.context(headers))


@pytest.mark.parametrize(
    ("value", "card"),
    [
        (CARD, True),
        ("4458-5630-7407-7526", True),
        ("4458.5630.7407.7526", True),
        ("4458:5630:7407:7526", True),
        ("4-4-5-8-5-6-3-0-7-4-0-7-7-5-2-6", True),
        ("tenant-" + CARD, True),
        ("2026-12-06-" + CARD, True),
        ("3782-822463-10005", True),  # Amex 4-6-5
        ("4458563074077527", False),  # Luhn fails
        ("550e8400-e29b-41d4-a716-446655440000", False),
        ("req-000123", False),
        ("retail-uk", False),
    ],
)
def test_card_shaped_digit_runs(value, card):
    assert holds_card_number(value) is card


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"x-request-id": "a" * 129}, "x-request-id"),
        ({"x-request-id": "id with spaces"}, "x-request-id"),
        # Zero-width joiners and Arabic-Indic digits cannot hide a number: they fail the charset.
        ({"x-request-id": "4458\u200b5630\u200b7407\u200b7526"}, "x-request-id"),
        ({"x-finserve-tenant": "\u0664\u0664\u0665\u0668\u0665\u0666\u0663\u0660"}, "x-finserve-tenant"),
        ({"x-finserve-tenant": CARD}, "x-finserve-tenant"),
        ({"x-finserve-tenant": "acme-4458-5630-7407-7526"}, "x-finserve-tenant"),
        ({"x-finserve-tenant": "GB82WEST12345698765432"}, "x-finserve-tenant"),
        ({"x-finserve-tenant": "t" * 65}, "x-finserve-tenant"),
        ({"x-finserve-adapter": f"card{CARD}@1.0.0"}, "x-finserve-adapter"),
        ({"x-finserve-adapter": "Banking"}, "x-finserve-adapter"),
        ({"x-finserve-session": "s" * 257}, "x-finserve-session"),
        ({"x-user-id": "u" * 300}, "x-user-id"),
    ],
)
def test_bad_values_are_refused_by_field_and_never_kept(fields, headers, field):
    ctx, error = context(fields, headers)
    assert isinstance(error, InvalidRequest) and error.param == field and error.message.startswith(field)
    value = next(iter(headers.values()))
    assert value not in error.message
    assert value not in (ctx.request_id, ctx.tenant, ctx.adapter_override, ctx.sticky_key)
    assert ctx.tenant == "default" and ctx.adapter_override is None


def test_a_request_id_that_looks_like_a_card_is_pseudonymised(fields):
    ctx, error = context(fields, {"x-request-id": "4458-5630-7407-7526"})
    assert error is None and ctx.request_id == pseudonym("4458-5630-7407-7526", b"k" * 32)
    assert ctx.request_id.startswith("u_") and "4458" not in ctx.request_id


def test_good_values_pass_and_session_keys_are_pseudonyms(fields):
    ctx, error = context(
        fields,
        {
            "x-request-id": "req-2026.12.06:1",
            "x-finserve-tenant": "retail-uk",
            "x-finserve-adapter": "banking77@1.2.0",
            "x-finserve-session": "jane@example.com",
        },
    )
    assert error is None
    assert (ctx.request_id, ctx.tenant, ctx.adapter_override) == (
        "req-2026.12.06:1",
        "retail-uk",
        "banking77@1.2.0",
    )
    assert (
        ctx.sticky_key == pseudonym("jane@example.com", b"k" * 32) != pseudonym("jane@example.com", b"j" * 32)
    )


def test_uuids_pass_as_request_ids(fields):
    """Opaque ids are what clients send: canonical UUIDs are never refused or rewritten (a seeded sample,
    so the test is deterministic; the 32-hex form holds a Luhn-valid 13-digit run about once in 500 ids,
    and is then pseudonymised, never refused)."""
    rng = random.Random(16)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(300)]
    dashed = {str(i): context(fields, {"x-request-id": str(i)}) for i in ids}
    assert [i for i, (ctx, error) in dashed.items() if error is not None or ctx.request_id != i] == []
    hexes = [context(fields, {"x-request-id": i.hex}) for i in ids]
    assert all(
        error is None and (ctx.request_id == i.hex or ctx.request_id.startswith("u_"))
        for i, (ctx, error) in zip(ids, hexes, strict=True)
    )


def test_user_field_and_body_ids(fields):
    assert fields.user("jane@example.com") == pseudonym("jane@example.com", b"k" * 32)
    assert fields.user(None) is None
    with pytest.raises(InvalidRequest) as err:
        fields.user("x" * 257, "parameters.user")
    assert err.value.param == "parameters.user"
    assert asyncio.run(fields.request_id("id", "grpc-1")) == "grpc-1"
    assert asyncio.run(fields.request_id("id", CARD)).startswith("u_")
    with pytest.raises(InvalidRequest) as err:
        asyncio.run(fields.request_id("id", "a b"))
    assert err.value.param == "id"


def test_tenant_labels_are_bounded():
    assert tenant_label("default", "default", []) == "default"
    assert tenant_label("retail", "default", ["retail"]) == "retail"
    assert tenant_label("made-up-1", "default", ["retail"]) == "other"
