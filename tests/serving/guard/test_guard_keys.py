"""Where the hash action's key comes from."""

from __future__ import annotations

import logging

import pytest

from finserve.serving.guard.config import HASH_KEY_ENV
from finserve.serving.guard.keys import load_hash_key


def test_key_from_env() -> None:
    assert load_hash_key({HASH_KEY_ENV: "a-sufficiently-long-key"}) == b"a-sufficiently-long-key"


def test_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        load_hash_key({HASH_KEY_ENV: "short"})


def test_unset_key_gives_one_random_key_per_process(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        first = load_hash_key({})
        second = load_hash_key({})
    assert first == second and len(first) == 32
    assert sum(HASH_KEY_ENV in r.getMessage() for r in caplog.records) == 2
