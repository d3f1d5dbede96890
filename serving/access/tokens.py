"""JWT bearer tokens (PyJWT): signature against a JWKS, then issuer, audience, expiry and the claims
that say who the caller is, which tenants it acts for and what it may do."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import jwt

from ..client_ids import MIN_DIGITS_TO_SCAN, TENANT, holds_card_number, pseudonym
from ..errors import Unauthorized
from .config import JwtConfig
from .principal import Principal

log = logging.getLogger(__name__)

_SAFE_ID = TENANT  # the same charset as tenants: printable, bounded, no separators a log could be split on


class JwksFile:
    """Signing keys from a JWKS file, re-read when its mtime or size changes (checked every few seconds)."""

    def __init__(self, path: Path, check_s: float = 2.0) -> None:
        self.path, self.check_s = path, check_s
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._stamp: tuple[float, int] | None = None
        self._checked = float("-inf")

    def key(self, kid: str | None) -> jwt.PyJWK:
        now = time.monotonic()
        if now - self._checked >= self.check_s:
            self._checked = now
            self._load()
        only = next(iter(self._keys.values())) if kid is None and len(self._keys) == 1 else None
        found = self._keys.get(kid) or only
        if found is None:
            raise Unauthorized("the token's signing key (kid) is not in the JWKS", invalid_token=True)
        return found

    def _load(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime, st.st_size)
            if stamp == self._stamp:
                return
            jwks = jwt.PyJWKSet.from_dict(json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            # Keep the last good keys: a half-written rotation must not lock everyone out.
            log.error(
                "JWKS file %s unreadable, keeping %d keys: %s",
                self.path,
                len(self._keys),
                exc.__class__.__name__,
            )
            return
        self._keys = {k.key_id: k for k in jwks.keys}
        self._stamp = stamp


class JwksUrl:
    """Signing keys from a JWKS URL: PyJWKClient caches the set; an unknown kid refetches it (a key
    rotation at the provider), at most once per ``refetch_s``, so tokens with made-up kids cannot turn
    every request into a fetch. A fetch blocks the calling thread (timeout 5 s); it happens once per
    cache lifetime or rotation."""

    def __init__(self, url: str, cache_s: int, refetch_s: float = 30.0) -> None:
        self._client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=cache_s, timeout=5)
        self.refetch_s = refetch_s
        self._refetched = float("-inf")

    def key(self, kid: str | None) -> jwt.PyJWK:
        try:
            found = self._find(self._client.get_jwk_set(), kid)
            if found is None and time.monotonic() - self._refetched >= self.refetch_s:
                self._refetched = time.monotonic()
                found = self._find(self._client.get_jwk_set(refresh=True), kid)
        except jwt.PyJWKClientConnectionError as exc:
            log.error("JWKS URL unreachable: %s", exc.__class__.__name__)
            raise Unauthorized(
                "the identity provider's keys cannot be fetched; retry later", invalid_token=True
            ) from None
        except jwt.PyJWTError:
            raise Unauthorized("the identity provider's JWKS is unusable", invalid_token=True) from None
        if found is None:
            raise Unauthorized("the token's signing key (kid) is not in the JWKS", invalid_token=True)
        return found

    @staticmethod
    def _find(jwks: jwt.PyJWKSet, kid: str | None) -> jwt.PyJWK | None:
        keys = [k for k in jwks.keys if k.public_key_use in (None, "sig")]
        if kid is None:
            return keys[0] if len(keys) == 1 else None
        return next((k for k in keys if k.key_id == kid), None)


class JwtVerifier:
    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        self._keys: JwksFile | JwksUrl = (
            JwksFile(Path(config.jwks_file))
            if config.jwks_file
            else JwksUrl(str(config.jwks_url), config.jwks_cache_s)
        )

    def verify(self, token: str) -> Principal:
        c = self.config
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.key(header.get("kid"))
            claims = jwt.decode(
                token,
                key=key,
                algorithms=list(c.algorithms),
                audience=c.audience,
                issuer=c.issuer,
                leeway=c.leeway_s,
                options={"require": ["exp", "iss", "aud"], "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired", invalid_token=True) from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the token's audience is not this service", invalid_token=True) from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the token's issuer is not trusted", invalid_token=True) from None
        except jwt.PyJWTError as exc:
            # PyJWT's messages name claims and algorithms, never token content: safe to pass on.
            raise Unauthorized(f"invalid token: {exc}", invalid_token=True) from None
        return self.principal(claims)

    def principal(self, claims: dict[str, Any]) -> Principal:
        c = self.config
        subject = claims.get(c.principal_claim)
        if not isinstance(subject, str) or not subject:
            raise Unauthorized(f"the token has no {c.principal_claim} claim", invalid_token=True)
        return Principal(
            id=f"jwt:{_safe_id(subject)}",
            kind="jwt",
            tenants=tuple(_strings(claims.get(c.tenants_claim), tenant=True)),
            scopes=frozenset(_strings(claims.get(c.scope_claim))),
        )


def _safe_id(subject: str) -> str:
    """The subject as is when it is a plain id; its pseudonym when it may be personal data (an email, a
    number), since principal ids reach logs and the audit line."""
    if (
        _SAFE_ID.fullmatch(subject)
        and not holds_card_number(subject)
        and sum(ch.isdigit() for ch in subject) < MIN_DIGITS_TO_SCAN
    ):
        return subject
    return pseudonym(subject)


def _strings(value: object, tenant: bool = False) -> list[str]:
    """A claim as a list: a space-separated string (OAuth2's scope) or a list of strings. Tenant values
    outside the tenant charset (and "*") are dropped: they would be refused as headers too."""
    items = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
    out = [v for v in items if isinstance(v, str)]
    if tenant:
        out = [v for v in out if TENANT.fullmatch(v)]  # never "*": any-tenant is for keys made by hand
    return out
