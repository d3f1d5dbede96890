"""The pure authorisation decision, as a table: principal x tenant header x scope x adapter override."""

from __future__ import annotations

import pytest

from finserve.serving.access import (
    ADAPTER_OVERRIDE,
    ADMIN,
    INFER,
    Principal,
    authorize,
    required_scope,
    rpc_scope,
)
from finserve.serving.errors import Forbidden, InvalidRequest, Unauthorized

RETAIL = Principal("key:aaaaaaaaaaaa", "key", ("retail",), frozenset({INFER}))
MULTI = Principal("key:bbbbbbbbbbbb", "key", ("retail", "business"), frozenset({INFER}))
OVERRIDER = Principal("jwt:qa-bot", "jwt", ("retail",), frozenset({INFER, ADAPTER_OVERRIDE}))
ANY = Principal("key:cccccccccccc", "key", ("*",), frozenset({INFER}))
OPS = Principal("key:dddddddddddd", "key", ("retail",), frozenset({ADMIN}))
NO_TENANT = Principal("jwt:orphan", "jwt", (), frozenset({INFER}))


@pytest.mark.parametrize(
    ("name", "principal", "tenant", "override", "expected"),
    [
        ("single tenant, no header", RETAIL, None, None, ("retail", None)),
        ("single tenant named", RETAIL, "retail", None, ("retail", None)),
        ("another tenant", RETAIL, "business", None, Forbidden),
        ("several tenants, none named", MULTI, None, None, InvalidRequest),
        ("several tenants, one named", MULTI, "business", None, ("business", None)),
        ("several tenants, a third", MULTI, "private", None, Forbidden),
        ("any tenant, none named: the default", ANY, None, None, ("default", None)),
        ("any tenant, one named", ANY, "private", None, ("private", None)),
        ("override without the scope", RETAIL, None, "banking@1.1.0", Forbidden),
        ("override with the scope", OVERRIDER, None, "banking@1.1.0", ("retail", "banking@1.1.0")),
        ("admin only: no infer", OPS, None, None, Forbidden),
        ("no tenant at all", NO_TENANT, None, None, Forbidden),
        ("no principal", None, None, None, Unauthorized),
    ],
)
def test_authorize_table(name, principal, tenant, override, expected):
    kwargs = {
        "auth_on": True,
        "scope": INFER,
        "requested_tenant": tenant,
        "default_tenant": "default",
        "adapter_override": override,
    }
    if isinstance(expected, type):
        with pytest.raises(expected) as err:
            authorize(principal, **kwargs)
        if principal is not None:
            assert principal.id in err.value.message, name  # the message names who, never the value sent
        if tenant:
            assert tenant not in err.value.message, name
        return
    decision = authorize(principal, **kwargs)
    assert (decision.tenant, decision.adapter_override) == expected, name


def test_forbidden_override_and_tenant_name_their_header():
    with pytest.raises(Forbidden) as err:
        authorize(
            RETAIL,
            auth_on=True,
            scope=INFER,
            requested_tenant=None,
            default_tenant="d",
            adapter_override="banking@1.1.0",
        )
    assert err.value.param == "x-finserve-adapter" and ADAPTER_OVERRIDE in err.value.message
    with pytest.raises(Forbidden) as err:
        authorize(
            RETAIL,
            auth_on=True,
            scope=INFER,
            requested_tenant="business",
            default_tenant="d",
            adapter_override=None,
        )
    assert err.value.param == "x-finserve-tenant"


def test_auth_off_runs_as_asked():
    d = authorize(
        None,
        auth_on=False,
        scope=INFER,
        requested_tenant="retail",
        default_tenant="default",
        adapter_override="banking@1.1.0",
    )
    assert (d.tenant, d.adapter_override) == ("retail", "banking@1.1.0")
    assert (
        authorize(
            None,
            auth_on=False,
            scope=INFER,
            requested_tenant=None,
            default_tenant="default",
            adapter_override=None,
        ).tenant
        == "default"
    )


@pytest.mark.parametrize(
    ("path", "scope"),
    [
        ("/healthz", None),
        ("/readyz", None),
        ("/v2/health/live", None),
        ("/v2/health/ready", None),
        ("/metrics", ADMIN),
        ("/docs", ADMIN),
        ("/openapi.json", ADMIN),
        ("/-/routes", ADMIN),
        ("/v1/models", INFER),
        ("/v2/models/finserve-banking", INFER),
        ("/v1/chat/completions", INFER),
        ("/v1/some-new-endpoint", INFER),
    ],
)
def test_required_scope_is_closed_by_default(path, scope):
    assert required_scope(path) == scope


def test_rpc_probes_are_open_and_the_rest_need_infer():
    assert rpc_scope("ServerLive") is None and rpc_scope("ServerReady") is None
    assert rpc_scope("ModelInfer") == rpc_scope("ModelMetadata") == rpc_scope("ServerMetadata") == INFER


@pytest.mark.parametrize(
    ("host", "mode", "auth_on", "expected_host", "warn"),
    [
        ("0.0.0.0", "auto", False, "127.0.0.1", True),  # nothing configured: loopback only, and said so
        ("127.0.0.1", "auto", False, "127.0.0.1", False),
        ("::1", "auto", False, "::1", False),
        ("0.0.0.0", "auto", True, "0.0.0.0", False),
        ("0.0.0.0", "none", False, "0.0.0.0", True),  # explicit: served open, warned about
        ("localhost", "none", False, "localhost", False),
    ],
)
def test_bind_without_auth_is_loopback_unless_mode_none(host, mode, auth_on, expected_host, warn):
    from finserve.serving.access.policy import bind

    b = bind(host, mode, auth_on)
    assert (b.host, b.warn) == (expected_host, warn)
    assert ("auth: on" in b.message) == auth_on
