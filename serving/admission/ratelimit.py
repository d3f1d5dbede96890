"""Requests and generated tokens per minute, per principal and per tenant, counted by the `limits` library.

Tokens are charged up front, at the request's max tokens: the decision is made before any work is done,
and a client cannot overrun its allowance with one long answer. Counters live in Redis when a URL is
configured (one budget across every replica), else in this process. On Redis, the default sliding-window
counter checks and charges all of a request's limits in one round trip (redis_window.py); the other
strategies, and memory, go through `limits`' strategies. Redis failing must not take the assistant down
with it: the limiter then admits the request (fail open), counts the failure and logs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Literal

from limits import RateLimitItemPerMinute
from limits.aio import storage as limits_storage
from limits.aio import strategies
from prometheus_client import CollectorRegistry, Counter

from .config import RateLimitConfig, RateLimits
from .redis_window import RedisSlidingWindows

log = logging.getLogger(__name__)

Kind = Literal["requests", "tokens"]
_STRATEGIES = {
    "sliding-window-counter": strategies.SlidingWindowCounterRateLimiter,
    "moving-window": strategies.MovingWindowRateLimiter,
    "fixed-window": strategies.FixedWindowRateLimiter,
}
_LOG_EVERY_S = 30.0  # one log line per this many seconds while the store is down, not one per request


@dataclass(frozen=True)
class Quota:
    """One limit's state after this request: what OpenAI's x-ratelimit-* headers report."""

    limit: int
    remaining: int
    reset_s: float


@dataclass(frozen=True)
class Decision:
    allowed: bool
    quotas: dict[Kind, Quota] = field(default_factory=dict)  # the tightest limit of each kind
    retry_after: int | None = None
    exceeded: Kind | None = None

    def headers(self) -> dict[str, str]:
        """OpenAI's rate-limit headers for the tightest limit of each kind."""
        out: dict[str, str] = {}
        for kind, q in sorted(self.quotas.items()):
            out[f"x-ratelimit-limit-{kind}"] = str(q.limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(max(q.remaining, 0))
            out[f"x-ratelimit-reset-{kind}"] = duration(q.reset_s)
        return out


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``1s``, ``6m0s``, ``250ms``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def party_key(value: str) -> str:
    """A counter key for a principal, tenant or client address: hashed, so Redis holds no identifier."""
    return hashlib.sha256(value.encode("utf-8", errors="replace")).hexdigest()[:32]


@dataclass(frozen=True)
class _Check:
    kind: Kind
    party: str  # "principal" | "tenant"
    key: str
    limit: int
    cost: int

    @property
    def item(self) -> RateLimitItemPerMinute:
        return RateLimitItemPerMinute(self.limit, namespace=f"{self.party}-{self.kind}")


def plan(config: RateLimitConfig, principal: str, tenant: str, requests: int, tokens: int) -> list[_Check]:
    """The limits one request is checked against (pure: no I/O)."""
    out: list[_Check] = []
    for party, key, limits in (
        ("principal", principal, config.per_principal),
        ("tenant", tenant, config.per_tenant),
    ):
        out.extend(_checks(party, party_key(key), limits, requests, tokens))
    return out


def _checks(party: str, key: str, limits: RateLimits, requests: int, tokens: int) -> list[_Check]:
    out = []
    if limits.requests_per_minute is not None:
        out.append(_Check("requests", party, key, limits.requests_per_minute, requests))
    if limits.tokens_per_minute is not None:
        out.append(_Check("tokens", party, key, limits.tokens_per_minute, tokens))
    return out


class RateLimiter:
    """Checks and charges a request's limits; storage errors admit it (fail open)."""

    def __init__(self, config: RateLimitConfig, registry: CollectorRegistry, clock=time.time) -> None:  # noqa: ANN001 - injected for tests of the headers' reset
        self.config = config
        self._clock = clock
        self._limiter: strategies.RateLimiter | None = None
        self._windows: RedisSlidingWindows | None = None
        self._last_log = 0.0
        self.store_errors = Counter(
            "finserve_ratelimit_store_errors",
            "Rate-limit checks that failed open because the limiter's store (Redis) failed.",
            registry=registry,
        )
        self.rejected = Counter(
            "finserve_ratelimit_rejected",
            "Requests refused with 429, by the limit they hit.",
            ["party", "kind"],
            registry=registry,
        )

    def _strategy(self) -> strategies.RateLimiter:
        # Built on first use, inside the serving event loop the async storage belongs to.
        if self._limiter is None:
            c = self.config
            if c.redis_url:
                uri = "async+" + c.redis_url if not c.redis_url.startswith("async+") else c.redis_url
                store = limits_storage.RedisStorage(
                    uri,
                    wrap_exceptions=True,
                    implementation="redispy",
                    key_prefix=c.key_prefix,
                    socket_timeout=c.redis_timeout_s,
                    socket_connect_timeout=c.redis_timeout_s,
                )
            else:
                store = limits_storage.MemoryStorage()
            self._limiter = _STRATEGIES[c.strategy](store)
        return self._limiter

    def _redis_windows(self) -> RedisSlidingWindows | None:
        # The one-round-trip path: Redis with limits' default strategy. Built on first use, in the serving loop.
        c = self.config
        if not c.redis_url or c.strategy != "sliding-window-counter":
            return None
        if self._windows is None:
            self._windows = RedisSlidingWindows(
                c.redis_url.removeprefix("async+"), c.key_prefix, c.redis_timeout_s
            )
        return self._windows

    async def check(self, principal: str, tenant: str, requests: int, tokens: int) -> Decision:
        """Charges the request if every limit has room; otherwise charges nothing and says which limit is full."""
        if not self.config.enabled:
            return Decision(True)
        checks = plan(self.config, principal, tenant, requests, tokens)
        if not checks:
            return Decision(True)
        try:
            return await asyncio.wait_for(self._check(checks), timeout=self.config.redis_timeout_s * 4)
        except Exception as exc:  # noqa: BLE001 - the limiter's store must not take the assistant down
            self.store_errors.inc()
            now = self._clock()
            if now - self._last_log >= _LOG_EVERY_S:
                self._last_log = now
                log.warning(
                    "rate limiter store failed (%s): admitting requests unchecked (fail open)",
                    exc.__class__.__name__,
                )
            return Decision(True)

    async def _check(self, checks: list[_Check]) -> Decision:
        windows = self._redis_windows()
        if windows is not None:
            return await self._check_at_once(windows, checks)
        return await self._check_in_rounds(checks)

    async def _check_in_rounds(self, checks: list[_Check]) -> Decision:
        # Two store round trips, not three: each limit's window stats both decide whether it has room
        # (remaining >= cost is the strategies' own `test`) and feed the headers; then every limit is charged.
        limiter = self._strategy()
        stats = await _gather(limiter.get_window_stats(c.item, c.key) for c in checks)
        full = [c for c, s in zip(checks, stats, strict=True) if s.remaining < c.cost]
        charged: list[bool] = [False] * len(checks)
        if not full:
            charged = await _gather(limiter.hit(c.item, c.key, cost=c.cost) for c in checks)
            full = [c for c, ok in zip(checks, charged, strict=True) if not ok]  # lost a race meanwhile
        now = self._clock()
        quotas: dict[Kind, Quota] = {}
        for c, s, paid in zip(checks, stats, charged, strict=True):
            remaining = s.remaining - c.cost if paid else s.remaining
            q = Quota(limit=c.limit, remaining=remaining, reset_s=max(0.0, s.reset_time - now))
            if c.kind not in quotas or q.remaining < quotas[c.kind].remaining:
                quotas[c.kind] = q
        if not full:
            return Decision(True, quotas)
        first = full[0]
        for c in full:
            self.rejected.labels(c.party, c.kind).inc()
        wait = max(max(0.0, s.reset_time - now) for c, s in zip(checks, stats, strict=True) if c in full)
        return Decision(False, quotas, retry_after=max(1, math.ceil(wait)), exceeded=first.kind)

    async def _check_at_once(self, windows: RedisSlidingWindows, checks: list[_Check]) -> Decision:
        """Every limit checked and charged in one atomic Redis call: a refused request charges none of them."""
        charged, before = await windows.check_and_charge([(c.item, c.key, c.cost) for c in checks])
        quotas: dict[Kind, Quota] = {}
        for c, w in zip(checks, before, strict=True):
            remaining = w.remaining - c.cost if charged else w.remaining
            q = Quota(limit=c.limit, remaining=remaining, reset_s=w.reset_in_s)
            if c.kind not in quotas or q.remaining < quotas[c.kind].remaining:
                quotas[c.kind] = q
        if charged:
            return Decision(True, quotas)
        # The script refuses exactly when some limit has less room than its cost (the same floor arithmetic).
        full = [(c, w) for c, w in zip(checks, before, strict=True) if w.remaining < c.cost]
        full = full or [(checks[0], before[0])]
        for c, _ in full:
            self.rejected.labels(c.party, c.kind).inc()
        wait = max(w.reset_in_s for _, w in full)
        return Decision(False, quotas, retry_after=max(1, math.ceil(wait)), exceeded=full[0][0].kind)


async def _gather(calls) -> list:  # noqa: ANN001 - a generator of awaitables
    items: list[Awaitable] = list(calls)
    return list(await asyncio.gather(*items))
