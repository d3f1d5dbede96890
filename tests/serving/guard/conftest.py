"""Real Presidio guards, built once per session (building one takes about a second)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from finserve.serving.guard import GuardConfig, PIIGuard

TEST_HASH_KEY = b"finserve-tests-only-hmac-key-000"

GuardFactory = Callable[..., PIIGuard]


@pytest.fixture(scope="session")
def hash_key() -> bytes:
    """The HMAC key every guard built by make_guard uses (a test value, not a secret)."""
    return TEST_HASH_KEY


@pytest.fixture(scope="session")
def make_guard() -> GuardFactory:
    """Build (and cache) a PIIGuard for the GuardConfig fields given as keyword arguments."""
    cache: dict[str, PIIGuard] = {}

    def make(**fields: object) -> PIIGuard:
        config = GuardConfig.model_validate(fields)
        key = config.model_dump_json()
        if key not in cache:
            cache[key] = PIIGuard(config, hash_key=TEST_HASH_KEY)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def guard(make_guard: GuardFactory) -> PIIGuard:
    """The default policy: every default entity type, replaced by <TYPE>."""
    return make_guard()
