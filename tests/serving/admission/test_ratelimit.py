"""Rate limits per principal and tenant, with `limits` in memory and on a real Redis; Redis down fails open."""

from __future__ import annotations

import pytest
from netutil import free_port
from prometheus_client import CollectorRegistry

from finserve.serving.admission import Admission, AdmissionConfig, RateLimitConfig, RateLimits, limit_key
from finserve.serving.admission.ratelimit import RateLimiter, duration, party_key, plan
from finserve.serving.errors import RateLimited, map_error


def _config(redis_url: str | None = None, **parties: RateLimits) -> RateLimitConfig:
    return RateLimitConfig(
        per_principal=parties.get("principal", RateLimits()),
        per_tenant=parties.get("tenant", RateLimits()),
        redis_url=redis_url,
    )


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> str | None:
    if request.param == "memory":
        return None
    server = request.getfixturevalue("redis_server")
    return server.url


def test_plan_lists_only_the_limits_configured() -> None:
    cfg = _config(principal=RateLimits(requests_per_minute=5), tenant=RateLimits(tokens_per_minute=100))
    checks = plan(cfg, "principal:alice", "bank-a", requests=2, tokens=48)
    assert [(c.party, c.kind, c.limit, c.cost) for c in checks] == [
        ("principal", "requests", 5, 2),
        ("tenant", "tokens", 100, 48),
    ]
    assert "alice" not in checks[0].key and checks[0].key == party_key(
        "principal:alice"
    )  # no raw id in Redis


def test_reset_durations_read_like_openais() -> None:
    assert [duration(s) for s in (0.25, 1, 59.2, 60, 360)] == ["250ms", "1s", "1m0s", "1m0s", "6m0s"]


def test_without_a_principal_the_client_address_is_limited() -> None:
    assert limit_key("key-1", "10.0.0.1") == "principal:key-1"
    assert limit_key(None, "10.0.0.1") == "address:10.0.0.1"


async def test_requests_per_minute_per_principal(store: str | None) -> None:
    registry = CollectorRegistry()
    limiter = RateLimiter(_config(store, principal=RateLimits(requests_per_minute=3)), registry)
    principal = f"principal:{free_port()}"  # fresh counters on the session's Redis
    first = [await limiter.check(principal, "t", 1, 10) for _ in range(3)]
    assert all(d.allowed for d in first)
    assert [d.quotas["requests"].remaining for d in first] == [2, 1, 0]
    refused = await limiter.check(principal, "t", 1, 10)
    assert not refused.allowed and refused.exceeded == "requests" and refused.retry_after >= 1
    headers = refused.headers()
    assert headers["x-ratelimit-limit-requests"] == "3" and headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert (await limiter.check("principal:someone-else", "t", 1, 10)).allowed  # per principal
    assert (
        registry.get_sample_value(
            "finserve_ratelimit_rejected_total", {"party": "principal", "kind": "requests"}
        )
        == 1
    )


async def test_tokens_are_charged_up_front_per_tenant(store: str | None) -> None:
    limiter = RateLimiter(_config(store, tenant=RateLimits(tokens_per_minute=100)), CollectorRegistry())
    tenant = f"bank-{free_port()}"
    assert (await limiter.check("principal:a", tenant, 1, 60)).allowed
    refused = await limiter.check("principal:b", tenant, 1, 60)  # another principal, the same tenant's budget
    assert not refused.allowed and refused.exceeded == "tokens"
    assert refused.headers()["x-ratelimit-remaining-tokens"] == "40"
    # A refused request charged nothing: the 40 left still admit a smaller one.
    assert (await limiter.check("principal:b", tenant, 1, 40)).allowed


async def test_redis_down_fails_open_with_a_metric_and_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    limiter = RateLimiter(_config(dead, principal=RateLimits(requests_per_minute=1)), registry)
    decisions = [await limiter.check("principal:a", "t", 1, 1) for _ in range(3)]
    assert all(d.allowed for d in decisions) and decisions[0].headers() == {}
    assert registry.get_sample_value("finserve_ratelimit_store_errors_total") == 3
    assert [r.message for r in caplog.records if "fail open" in r.message][:1]  # logged (once per 30 s)
    assert len([r for r in caplog.records if "fail open" in r.message]) == 1


async def test_admission_raises_429_with_retry_after_and_openai_headers() -> None:
    cfg = AdmissionConfig(rate=_config(principal=RateLimits(requests_per_minute=1)))
    admission = Admission(cfg, CollectorRegistry())
    ok = await admission.admit(None, "10.1.1.1", "default", 1, 24)
    assert ok["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(RateLimited) as refused:
        await admission.admit(None, "10.1.1.1", "default", 1, 24)
    m = map_error(refused.value)
    assert (m.status, m.code, m.grpc_code.name) == (429, "rate_limit_exceeded", "RESOURCE_EXHAUSTED")
    assert m.retry_after >= 1 and refused.value.headers["x-ratelimit-limit-requests"] == "1"
    assert await admission.admit(None, "10.1.1.2", "default", 1, 24)  # another address, its own budget


async def test_disabled_limits_admit_everything() -> None:
    cfg = _config(principal=RateLimits(requests_per_minute=1)).model_copy(update={"enabled": False})
    limiter = RateLimiter(cfg, CollectorRegistry())
    assert all([(await limiter.check("principal:a", "t", 1, 1)).allowed for _ in range(3)])


def test_ray_backpressure_is_a_503_overloaded_with_retry_after() -> None:
    from ray.serve.exceptions import BackPressureError

    m = map_error(BackPressureError(num_queued_requests=64, max_queued_requests=64))
    assert (m.status, m.code, m.retry_after, m.grpc_code.name) == (503, "overloaded", 2, "UNAVAILABLE")
    assert "64" not in m.message  # Ray's own text stays in the server log
    assert map_error(BackPressureError(1, 1, retry_after_s=4.2)).retry_after == 5
