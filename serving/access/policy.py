"""Pure authorisation: principal x requested tenant x needed scope x adapter override -> decision.

No I/O here: the ingress (ingress.py) verifies the credential and reads the headers, then asks
:func:`authorize`. Tenancy comes from the credential, never from a header alone: the header only
picks one of the principal's tenants.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Forbidden, InvalidRequest, Unauthorized
from .principal import ADAPTER_OVERRIDE, ADMIN, ANY_TENANT, INFER, Principal

# Paths anyone may call, auth on or off: liveness and readiness probes carry no credential.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
# Operational paths: only a principal with the admin scope (when auth is on).
ADMIN_PATHS = frozenset(
    {"/metrics", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc", "/-/routes"}
)
# gRPC methods (OIP v2) that are probes, as OPEN_PATHS.
OPEN_RPCS = frozenset({"ServerLive", "ServerReady"})


def required_scope(path: str) -> str | None:
    """The scope an HTTP path needs when auth is on; None: open to anyone. Every path not listed as
    open or admin needs ``infer`` (closed by default: a new endpoint is never open by accident)."""
    if path in OPEN_PATHS:
        return None
    if path in ADMIN_PATHS:
        return ADMIN
    return INFER


def rpc_scope(method: str) -> str | None:
    """The scope a gRPC method (its short name) needs when auth is on; None: open."""
    return None if method in OPEN_RPCS else INFER


@dataclass(frozen=True)
class Decision:
    """What the request runs as: its tenant, and the adapter override it may use (None: routing decides)."""

    tenant: str
    adapter_override: str | None


def authorize(
    principal: Principal | None,
    *,
    auth_on: bool,
    scope: str,
    requested_tenant: str | None,
    default_tenant: str,
    adapter_override: str | None,
) -> Decision:
    """Allow or refuse one request.

    Auth off (``auth_on`` False, so ``principal`` is None): the request runs as it asks (the header's
    tenant or the default one). Auth on: no principal is 401; a missing scope or a tenant that is not
    the principal's is 403; a principal with several tenants must name one (400 naming the header).
    """
    if not auth_on:
        return Decision(requested_tenant or default_tenant, adapter_override)
    principal = require_scope(principal, scope)
    if adapter_override is not None and not principal.has(ADAPTER_OVERRIDE):
        raise Forbidden(
            f"principal {principal.id} lacks the scope {ADAPTER_OVERRIDE!r} that x-finserve-adapter needs",
            param="x-finserve-adapter",
        )
    return Decision(_tenant(principal, requested_tenant, default_tenant), adapter_override)


def require_scope(principal: Principal | None, scope: str) -> Principal:
    """The principal, if it holds ``scope``: Unauthorized without one, Forbidden without the scope."""
    if principal is None:
        raise Unauthorized("a credential is required: Authorization: Bearer <API key or JWT>")
    if not principal.has(scope):
        raise Forbidden(f"principal {principal.id} lacks the scope {scope!r} this endpoint needs")
    return principal


def _tenant(principal: Principal, requested: str | None, default_tenant: str) -> str:
    if requested is not None:
        if not principal.may_act_for(requested):
            # The value is not echoed: it is client input. The principal's id is public.
            raise Forbidden(
                f"principal {principal.id} may not act for the tenant named in x-finserve-tenant",
                param="x-finserve-tenant",
            )
        return requested
    own = [t for t in principal.tenants if t != ANY_TENANT]
    if len(own) == 1 and ANY_TENANT not in principal.tenants:
        return own[0]
    if not own and ANY_TENANT in principal.tenants:
        return default_tenant
    if not own:
        raise Forbidden(f"principal {principal.id} has no tenant")
    raise InvalidRequest(
        f"x-finserve-tenant: principal {principal.id} has several tenants; name one",
        param="x-finserve-tenant",
    )


__all__ = ["ADMIN", "INFER", "Decision", "authorize", "require_scope", "required_scope", "rpc_scope"]


@dataclass(frozen=True)
class Bind:
    """Where the stack may listen, and what to tell the person starting it."""

    host: str
    message: str
    warn: bool


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, mode: str, auth_on: bool) -> Bind:
    """Auth on: listen where configured. No credential configured: loopback only (the laptop default),
    unless auth.mode is none, which serves any interface open to anyone and is warned about."""
    if mode == "none":
        if is_loopback(host):
            return Bind(host, "auth: off (auth.mode none); listening on loopback only", False)
        return Bind(
            host,
            f"auth: OFF (auth.mode none) on {host}: anyone who reaches this address can call every "
            "endpoint, as any tenant",
            True,
        )
    if auth_on:
        return Bind(host, "auth: on (API keys / JWT); health and readiness stay open", False)
    if is_loopback(host):
        return Bind(
            host, "auth: off (no key, JWKS or FINSERVE_API_KEY configured): serving loopback only", False
        )
    return Bind(
        "127.0.0.1",
        f"auth: off (no key, JWKS or FINSERVE_API_KEY configured): serving 127.0.0.1 instead of "
        f"{host}. Create a key (`finserve auth keys create`), configure auth.jwt, or set auth.mode: none "
        "to serve other interfaces without auth",
        True,
    )
