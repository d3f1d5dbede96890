"""The action functions on their own: masking, pseudonyms, normalisation."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from finserve.serving.guard.actions import mask, normalise_for_hash, operator_for, pseudonym, replace_token
from finserve.serving.guard.config import GuardConfig


@pytest.mark.parametrize(
    ("value", "keep", "expected"),
    [
        ("4111 1111 1111 1111", 0, "*" * 19),
        ("4111 1111 1111 1111", 4, "*" * 15 + "1111"),
        ("abc", 4, "***"),  # shorter than what would be kept: masked whole
        ("abcd", 4, "****"),
        ("", 0, ""),
    ],
)
def test_mask(value: str, keep: int, expected: str) -> None:
    assert mask(value, "*", keep) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4111-1111 1111.1111", "4111111111111111"),
        ("+44 (20) 7946-0958", "+442079460958"),
        ("Jane   DOE", "jane doe"),
        ("Jane.Doe@Example.com", "jane.doe@example.com"),
    ],
)
def test_normalise_for_hash(value: str, expected: str) -> None:
    assert normalise_for_hash(value) == expected


def test_pseudonym_is_truncated_hmac_sha256() -> None:
    expected = hmac.new(b"key" * 6, b"4111111111111111", hashlib.sha256).hexdigest()[:12]
    assert pseudonym("CREDIT_CARD", "4111 1111 1111 1111", b"key" * 6, 12) == f"<CREDIT_CARD:{expected}>"


def test_operator_for_follows_the_policy() -> None:
    config = GuardConfig(policies={"US_SSN": "redact", "EMAIL_ADDRESS": "mask", "PERSON": "block"})
    assert operator_for("US_SSN", config, b"")("536-22-8145") == ""
    assert operator_for("EMAIL_ADDRESS", config, b"")("a@b.co") == "******"
    assert operator_for("PERSON", config, b"")("Jane") == replace_token("PERSON") == "<PERSON>"
    assert operator_for("CREDIT_CARD", config, b"")("4111") == "<CREDIT_CARD>"


def test_hash_normalisation_reads_through_obfuscation() -> None:
    from finserve.serving.guard.actions import normalise_for_hash

    plain = normalise_for_hash("4458 5630 7407 7526")
    assert normalise_for_hash("４４５８\u200b５６３０７４０７-７５２６") == plain
    assert (
        normalise_for_hash(
            "four four five eight five six three zero seven four zero seven seven five two six"
        )
        == plain
    )
