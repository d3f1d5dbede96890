"""Signed checkpoints: an HMAC over the chain head and the line count, so a rewritten chain shows.

The hash chain alone proves order and integrity only against someone who cannot recompute it; anyone
who can write the file can. A checkpoint line carries ``HMAC-SHA256(key, "v1|lines|head|final")``:
without the key nobody can produce one for a recomputed chain, and the latest checkpoint, copied to
a head file beside the log, shows a truncated tail. The key lives in a file (a mounted Secret in the
chart) and never in the log: lines name it by ``key_id``, a hash prefix of the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

KIND = "kind"
CHECKPOINT = "checkpoint"
SEAL = "seal"
PURGE = "purge"
MIN_KEY_BYTES = 32


class CheckpointKeyError(Exception):
    """The checkpoint key file is missing, unreadable or too short."""


def key_id(key: bytes) -> str:
    """A public name for the key: 16 hex digits of SHA-256 over a domain tag and the key."""
    return hashlib.sha256(b"finserve-audit-key-id|" + key).hexdigest()[:16]


def mac(key: bytes, lines: int, head: str, final: bool) -> str:
    """HMAC-SHA256 over what a checkpoint vouches for: `lines` lines before it, ending in `head`."""
    message = f"v1|{lines}|{head}|{int(final)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def checkpoint_fields(key: bytes, lines: int, head: str, final: bool, time: str) -> dict[str, Any]:
    """The record part of a checkpoint line (the chain adds seq, prev_hash and hash)."""
    return {
        KIND: CHECKPOINT,
        "time": time,
        "lines": lines,
        "head": head,
        "final": final,
        "key_id": key_id(key),
        "mac": mac(key, lines, head, final),
    }


def mac_ok(key: bytes, line: dict[str, Any]) -> bool:
    """True when `line`'s MAC was made with `key` over its own lines, head and final flag."""
    try:
        expected = mac(key, int(line["lines"]), str(line["head"]), bool(line["final"]))
    except (KeyError, TypeError, ValueError):
        return False
    return isinstance(line.get("mac"), str) and hmac.compare_digest(expected, line["mac"])


def read_key(path: Path) -> bytes:
    """The key in `path`: raw bytes or hex text, at least 32 bytes once decoded."""
    try:
        raw = path.read_bytes().strip()
    except OSError as exc:
        raise CheckpointKeyError(f"cannot read the audit checkpoint key file ({exc.strerror})") from None
    try:
        key = bytes.fromhex(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = raw
    if len(key) < MIN_KEY_BYTES:
        raise CheckpointKeyError(f"the audit checkpoint key must hold at least {MIN_KEY_BYTES} bytes")
    return key


def create_key(path: Path) -> bytes:
    """Write a new random key (hex, mode 0600) to `path`; refuses to replace an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(MIN_KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def load_or_create_key(path: Path, create: bool) -> bytes:
    """The key in `path`; with `create` a missing file is made first (the laptop default)."""
    if create and not path.exists():
        try:
            return create_key(path)
        except FileExistsError:  # another process made it first: use theirs
            pass
    return read_key(path)
