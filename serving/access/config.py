"""Who may call: API keys, JWTs from the bank's identity provider, or (on loopback only) nobody checked."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from finserve.contracts import StrictModel


class JwtConfig(StrictModel):
    """Bearer JWTs signed by an identity provider, verified against its JWKS."""

    jwks_file: str | None = Field(
        None, description="JWKS file (re-read when it changes). One of jwks_file/jwks_url."
    )
    jwks_url: str | None = Field(
        None, description="JWKS URL (fetched and cached; refetched for an unknown kid)."
    )
    jwks_cache_s: int = Field(300, ge=10, le=86400, description="How long a fetched JWKS is reused.")
    issuer: str = Field(min_length=1, description="Required `iss` claim.")
    audience: str = Field(
        min_length=1, description="Required `aud` claim (finserve's client id at the provider)."
    )
    algorithms: list[Literal["RS256", "ES256", "RS384", "ES384", "RS512", "PS256"]] = Field(
        default_factory=lambda: ["RS256", "ES256"],
        description="Accepted signature algorithms (asymmetric only: never HS*, never none).",
    )
    leeway_s: int = Field(30, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat, in seconds.")
    principal_claim: str = Field(
        "sub",
        min_length=1,
        description="Claim naming the caller (audited as jwt:<value>; hashed if it "
        "looks like personal data, e.g. an email).",
    )
    tenants_claim: str = Field(
        "tenants", min_length=1, description="Claim holding the caller's tenants (a string or a list)."
    )
    scope_claim: str = Field(
        "scope",
        min_length=1,
        description="Claim holding scopes (space-separated string, as OAuth2, or a list).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> JwtConfig:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("auth.jwt needs exactly one of jwks_file and jwks_url")
        return self


class AuthConfig(StrictModel):
    """Authentication and authorisation of every request but health and readiness probes."""

    mode: Literal["auto", "none"] = Field(
        "auto",
        description="auto: auth is on as soon as a key exists in keys_file, the legacy key env var "
        "(gateway.api_key_env) is set or jwt is configured; with none of them the stack serves loopback "
        "(127.0.0.1) only. none: no auth on any interface (explicit, and warned about at start).",
    )
    keys_file: str | None = Field(
        None,
        description="API keys file (`finserve auth keys create` writes it; the chart mounts it from a "
        "Secret). Default: <data dir>/auth/keys.json (env FINSERVE_KEYS_FILE).",
    )
    keys_reload_s: float = Field(2.0, ge=0.1, description="How often the keys file is checked for changes.")
    jwt: JwtConfig | None = Field(None, description="JWT bearer tokens; None: API keys only.")
