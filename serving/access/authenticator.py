"""Credential -> Principal: API keys, JWTs and the one legacy key, behind one call."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from ..errors import Unauthorized
from ..paths import data_dir
from .config import AuthConfig
from .keys import PREFIX, KeyStore
from .principal import INFER, Principal
from .tokens import JwtVerifier

LEGACY_PRINCIPAL = "legacy-key"
KEYS_FILE_ENV = "FINSERVE_KEYS_FILE"


def keys_path(config: AuthConfig) -> Path:
    """The keys file: the config's, env FINSERVE_KEYS_FILE, or <data dir>/auth/keys.json."""
    explicit = config.keys_file or os.environ.get(KEYS_FILE_ENV)
    return Path(explicit) if explicit else data_dir() / "auth" / "keys.json"


class Authenticator:
    """Verifies the ``Authorization`` header. ``enabled`` says whether auth is on at all (see AuthConfig.mode)."""

    def __init__(
        self, config: AuthConfig, default_tenant: str, legacy_key_env: str = "FINSERVE_API_KEY"
    ) -> None:
        self.config = config
        self.default_tenant = default_tenant
        self.keys = KeyStore(keys_path(config), config.keys_reload_s)
        self.jwt = JwtVerifier(config.jwt) if config.jwt is not None else None
        self.legacy_key_env = legacy_key_env
        self._latched = False

    @property
    def _legacy(self) -> str | None:
        # Read per request, as the single key always was: setting it in a running process turns auth on.
        return os.environ.get(self.legacy_key_env) or None

    @property
    def enabled(self) -> bool:
        """On as soon as any credential source is configured; once on, it stays on while this process runs
        (deleting the keys file must not open the service)."""
        if self.config.mode == "none":
            return False
        if self._latched or self.jwt is not None or self._legacy is not None:
            return True
        if not self._latched and self.keys.configured():
            self._latched = True
        return self._latched

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The caller's principal; None when auth is off. Unauthorized when on and the credential is missing
        or does not verify."""
        if not self.enabled:
            return None
        if not authorization:
            raise Unauthorized("a credential is required: Authorization: Bearer <API key or JWT>")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(
                "the Authorization header must be 'Bearer <API key or JWT>'", invalid_token=True
            )
        if token.startswith(PREFIX):
            return self.keys.verify(token)
        if token.count(".") == 2 and self.jwt is not None:
            return self.jwt.verify(token)
        legacy = self._legacy
        if legacy is not None and hmac.compare_digest(token.encode(), legacy.encode()):
            return Principal(
                id=LEGACY_PRINCIPAL, kind="key", tenants=(self.default_tenant,), scopes=frozenset({INFER})
            )
        raise Unauthorized(
            "unknown credential: not a finserve API key nor a token this service trusts", invalid_token=True
        )
