"""Each policy action applied by the real guard: what replaces the PII, and what gets blocked."""

from __future__ import annotations

import hashlib
import hmac
import logging

import pytest

from finserve.serving.guard import HASH_KEY_ENV, EntityAction, GuardConfig, PIIGuard

TEXT = "card 4111 1111 1111 1111, mail jane@example.com."
CARD = "4111 1111 1111 1111"
MAIL = "jane@example.com"


def test_replace_writes_the_type_in_angle_brackets(make_guard) -> None:
    result = make_guard(default_action="replace").scan(TEXT)
    assert result.text == "card <CREDIT_CARD>, mail <EMAIL_ADDRESS>."
    assert result.blocked == []


def test_redact_removes_the_span(make_guard) -> None:
    assert make_guard(default_action="redact").scan(TEXT).text == "card , mail ."


def test_mask_keeps_the_length(make_guard) -> None:
    result = make_guard(default_action="mask", mask_char="#").scan(TEXT)
    assert result.text == f"card {'#' * len(CARD)}, mail {'#' * len(MAIL)}."


def test_mask_can_leave_the_last_digits(make_guard) -> None:
    result = make_guard(policies={"CREDIT_CARD": "mask"}, mask_keep_last=4).scan(TEXT)
    assert result.text == f"card {'*' * (len(CARD) - 4)}1111, mail <EMAIL_ADDRESS>."


def test_hash_is_a_keyed_hmac_pseudonym(make_guard, hash_key: bytes) -> None:
    result = make_guard(default_action="hash").scan(TEXT)
    card_mac = hmac.new(hash_key, b"4111111111111111", hashlib.sha256).hexdigest()[:16]
    mail_mac = hmac.new(hash_key, MAIL.encode(), hashlib.sha256).hexdigest()[:16]
    assert result.text == f"card <CREDIT_CARD:{card_mac}>, mail <EMAIL_ADDRESS:{mail_mac}>."


def test_hash_is_stable_across_spellings_and_differs_between_values(make_guard) -> None:
    guard = make_guard(default_action="hash", hash_length=24)
    spaced = guard.scan("card 4111 1111 1111 1111").text
    dashed = guard.scan("card 4111-1111-1111-1111").text
    other = guard.scan("card 5500 0000 0000 0004").text
    assert spaced == dashed
    assert spaced != other
    assert len(spaced) == len("card <CREDIT_CARD:>") + 24


def test_hash_depends_on_the_key() -> None:
    config = GuardConfig(default_action="hash", entities=["CREDIT_CARD"])
    one = PIIGuard(config, hash_key=b"k" * 32).scan("card 4111 1111 1111 1111").text
    two = PIIGuard(config, hash_key=b"j" * 32).scan("card 4111 1111 1111 1111").text
    assert one != two


def test_block_lists_the_type_and_still_sanitizes(make_guard) -> None:
    guard = make_guard(policies={"CREDIT_CARD": "block", "US_SSN": "block"})
    result = guard.scan(TEXT)
    assert result.blocked == ["CREDIT_CARD"]
    assert result.text == "card <CREDIT_CARD>, mail <EMAIL_ADDRESS>."
    assert guard.scan("ssn 536-22-8145 and " + TEXT).blocked == ["CREDIT_CARD", "US_SSN"]
    assert guard.scan("mail jane@example.com").blocked == []


def test_per_type_policies_override_the_default(make_guard) -> None:
    guard = make_guard(default_action="redact", policies={"EMAIL_ADDRESS": EntityAction.replace})
    assert guard.scan(TEXT).text == "card , mail <EMAIL_ADDRESS>."


def test_hash_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "env-key-for-this-test-only-0001"
    monkeypatch.setenv(HASH_KEY_ENV, key)
    guard = PIIGuard(GuardConfig(default_action="hash", entities=["EMAIL_ADDRESS"]))
    mac = hmac.new(key.encode(), MAIL.encode(), hashlib.sha256).hexdigest()[:16]
    assert guard.scan(MAIL).text == f"<EMAIL_ADDRESS:{mac}>"


def test_missing_hash_key_warns_once_at_startup(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(HASH_KEY_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="finserve.serving.guard.keys"):
        guard = PIIGuard(GuardConfig(default_action="hash", entities=["EMAIL_ADDRESS"]))
    assert [r.levelno for r in caplog.records if HASH_KEY_ENV in r.getMessage()] == [logging.WARNING]
    first = guard.scan(MAIL).text
    # Same process, same random key: pseudonyms from a second guard still match.
    assert PIIGuard(GuardConfig(default_action="hash", entities=["EMAIL_ADDRESS"])).scan(MAIL).text == first
    assert MAIL not in first


def test_no_key_needed_without_the_hash_action(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(HASH_KEY_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="finserve.serving.guard.keys"):
        PIIGuard(GuardConfig(entities=["EMAIL_ADDRESS"]))
    assert not [r for r in caplog.records if HASH_KEY_ENV in r.getMessage()]
