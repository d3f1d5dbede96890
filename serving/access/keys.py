"""API keys per client: ``fsk_<key id>_<secret>``, stored as a salted HMAC-SHA-256 of the secret.

The key id is public (12 hex digits): it finds the record in O(1) and is what logs and the audit line
name (principal ``key:<id>``). The secret is 256 random bits, so a fast keyed hash is enough (a slow
password hash such as bcrypt guards low-entropy secrets and would cost milliseconds per request);
the comparison is constant-time. Only the hash is stored; the key is shown once, when made.

The keys file (JSON, written 0600) is re-read when it changes, so a key made or revoked with
``finserve auth keys`` (or a rotated Kubernetes Secret) takes effect without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field

from finserve.contracts import StrictModel

from ..client_ids import TENANT
from ..errors import Unauthorized
from .principal import ANY_TENANT, SCOPES, Principal

log = logging.getLogger(__name__)

PREFIX = "fsk_"
KEY_ID = re.compile(r"^[0-9a-f]{12}$")
_KEY = re.compile(r"^fsk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


class KeyRecord(StrictModel):
    """One client's key, without the key."""

    id: str = Field(pattern=KEY_ID.pattern, description="Public key id (the part after fsk_).")
    name: str = Field(min_length=1, max_length=128, description="Who holds it (an operator's label).")
    tenants: list[str] = Field(min_length=1, description="Tenants the key may act for ('*': any).")
    scopes: list[str] = Field(min_length=1, description="What it may do: infer, adapter:override, admin.")
    salt: str = Field(pattern=r"^[0-9a-f]{32}$", description="Per-key salt (hex).")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="HMAC-SHA-256(salt, secret), hex.")
    created_at: datetime = Field(description="When it was made.")
    revoked_at: datetime | None = Field(
        None, description="When it was revoked; a revoked key never verifies."
    )

    def principal(self) -> Principal:
        return Principal(
            id=f"key:{self.id}", kind="key", tenants=tuple(self.tenants), scopes=frozenset(self.scopes)
        )


class KeysFile(StrictModel):
    """The keys file's content."""

    keys: list[KeyRecord] = Field(default_factory=list, description="Every key made, revoked ones included.")


def digest(salt: str, secret: str) -> str:
    return hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()


def parse_key(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    m = _KEY.fullmatch(token)
    return (m.group(1), m.group(2)) if m else None


def new_key(
    name: str, tenants: list[str], scopes: list[str], now: datetime | None = None
) -> tuple[str, KeyRecord]:
    """A fresh key and its record. Raises ValueError naming a bad tenant or scope."""
    for t in tenants:
        if t != ANY_TENANT and not TENANT.fullmatch(t):
            raise ValueError(f"tenant {t!r} must be 1-64 letters, digits or ._:- (or '*')")
    for s in scopes:
        if s not in SCOPES:
            raise ValueError(f"scope {s!r} is not one of {', '.join(SCOPES)}")
    kid, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_hex(16)
    record = KeyRecord(
        id=kid,
        name=name,
        tenants=sorted(set(tenants)),
        scopes=sorted(set(scopes)),
        salt=salt,
        hash=digest(salt, secret),
        created_at=now or datetime.now(UTC),
    )
    return f"{PREFIX}{kid}_{secret}", record


def read_keys(path: Path) -> KeysFile:
    if not path.exists():
        return KeysFile()
    return KeysFile.model_validate_json(path.read_text(encoding="utf-8"))


def write_keys(path: Path, keys: KeysFile) -> None:
    """Atomic, owner-only: a reader never sees half a file, and other host users cannot read the hashes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(keys.model_dump_json(indent=2))
    tmp.replace(path)


class KeyStore:
    """Verifies API keys against the keys file, re-reading it when it changes (checked every few seconds)."""

    def __init__(self, path: Path, reload_interval_s: float = 2.0) -> None:
        self.path = path
        self.reload_interval_s = reload_interval_s
        self._by_id: dict[str, KeyRecord] = {}
        self._stamp: tuple[float, int] | None = None
        self._checked = float("-inf")
        self.reload()

    def active(self) -> int:
        """How many unrevoked keys the file holds (auth is on when there is any)."""
        self.reload()
        return sum(1 for r in self._by_id.values() if r.revoked_at is None)

    def configured(self) -> bool:
        """Whether the file exists with any key in it, revoked or not: revoking every key closes the
        service, it never opens it."""
        self.reload()
        return bool(self._by_id)

    def reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.reload_interval_s:
            return
        self._checked = now
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._by_id, self._stamp = {}, None
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return
        try:
            keys = read_keys(self.path)
        except (OSError, ValueError) as exc:
            # A broken file must not open the service nor drop it: keep the last good keys, say so.
            log.error(
                "keys file %s is invalid, keeping the %d keys read before: %s",
                self.path,
                len(self._by_id),
                exc.__class__.__name__,
            )
            self._stamp = stamp
            return
        self._by_id = {r.id: r for r in keys.keys}
        self._stamp = stamp

    def verify(self, token: str) -> Principal:
        """The key's principal; Unauthorized for a malformed, unknown, wrong or revoked key."""
        parsed = parse_key(token)
        if parsed is None:
            raise Unauthorized("malformed API key", invalid_token=True)
        kid, secret = parsed
        self.reload()
        record = self._by_id.get(kid)
        # Hash even for an unknown id, so timing does not tell which ids exist.
        expected = record.hash if record else "0" * 64
        ok = hmac.compare_digest(digest(record.salt if record else "0" * 32, secret), expected)
        if record is None or not ok:
            raise Unauthorized("unknown or wrong API key", invalid_token=True)
        if record.revoked_at is not None:
            raise Unauthorized(f"API key {kid} is revoked", invalid_token=True)
        return record.principal()
