"""The HMAC key of the ``hash`` action: from the environment, never from code or config files."""

from __future__ import annotations

import logging
import os
import secrets
import threading

from .config import HASH_KEY_ENV

log = logging.getLogger(__name__)

MIN_KEY_BYTES = 16

_process_key: bytes | None = None
_process_key_lock = threading.Lock()


def _random_process_key() -> bytes:
    # One key per process, so pseudonyms still match across the stages of one process.
    global _process_key
    with _process_key_lock:
        if _process_key is None:
            _process_key = secrets.token_bytes(32)
        return _process_key


def load_hash_key(env: dict[str, str] | None = None) -> bytes:
    """The key from ``FINSERVE_PII_HASH_KEY``, or a random per-process key with a warning.

    A random key keeps hashing safe but makes pseudonyms differ between processes and restarts.
    """
    value = (os.environ if env is None else env).get(HASH_KEY_ENV, "")
    if not value:
        log.warning(
            "%s is unset: the hash action uses a random per-process key, so pseudonyms will not "
            "match across replicas or restarts",
            HASH_KEY_ENV,
        )
        return _random_process_key()
    key = value.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"{HASH_KEY_ENV} must be at least {MIN_KEY_BYTES} bytes long")
    return key
