"""What the gateway admits: rate limits per principal and tenant, and the bounded queue before the generator."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field

from finserve.contracts import StrictModel

REDIS_URL_ENV = "FINSERVE_REDIS_URL"  # the same Redis the retrieval cache uses


class RateLimits(StrictModel):
    """One party's allowance per minute; None means unlimited."""

    requests_per_minute: int | None = Field(None, ge=1, description="Requests per minute (None: unlimited).")
    tokens_per_minute: int | None = Field(
        None,
        ge=1,
        description="Generated tokens per minute, charged up front at each request's max tokens "
        "(max_tokens, or gateway.max_tokens_default when the client sets none), never refunded (None: unlimited).",
    )


class RateLimitConfig(StrictModel):
    """Rate limits with the `limits` library, on Redis when a URL is set (shared by every replica), else in memory."""

    enabled: bool = Field(True, description="Apply the limits below.")
    per_principal: RateLimits = Field(
        default_factory=lambda: RateLimits(requests_per_minute=600, tokens_per_minute=60_000),
        description="Per principal (the authenticated caller); a request without one is limited per client "
        "address instead.",
    )
    per_tenant: RateLimits = Field(
        default_factory=lambda: RateLimits(requests_per_minute=3_000, tokens_per_minute=300_000),
        description="Per tenant, all its principals together.",
    )
    strategy: Literal["sliding-window-counter", "moving-window", "fixed-window"] = Field(
        "sliding-window-counter",
        description="limits' strategy. sliding-window-counter (default) is the closest to a token bucket: the "
        "previous minute's count decays linearly, so the allowance refills smoothly, at two counters per key. "
        "moving-window is exact but keeps one entry per request or token (costly for token limits); "
        "fixed-window allows a double burst at a minute's edge.",
    )
    redis_url: str | None = Field(
        default_factory=lambda: os.environ.get(REDIS_URL_ENV) or None,
        description="Redis for the counters (env FINSERVE_REDIS_URL); None keeps them in this process's memory "
        "(per replica). If Redis fails, requests are admitted (fail open), counted in "
        "finserve_ratelimit_store_errors_total and logged.",
    )
    redis_timeout_s: float = Field(
        1.0,
        gt=0,
        description="Socket timeout of a limiter call to Redis; past it the request is admitted (fail open).",
    )
    key_prefix: str = Field("finserve-rl", min_length=1, description="Prefix of the limiter's Redis keys.")


class QueueConfig(StrictModel):
    """The bounded admission queue in front of the generator (per gateway replica or in-process stack)."""

    max_generating: int = Field(32, ge=1, description="Generations running at once; more wait.")
    max_waiting: int = Field(
        32,
        ge=0,
        description="Requests waiting for a generation slot; one more is shed "
        "with 503 and Retry-After instead of waiting without bound.",
    )
    retry_after_s: int = Field(2, ge=1, description="Retry-After (seconds) sent with a shed request.")


class AdmissionConfig(StrictModel):
    """Rate limits and load shedding."""

    rate: RateLimitConfig = Field(
        default_factory=RateLimitConfig, description="Per principal / tenant limits."
    )
    queue: QueueConfig = Field(default_factory=QueueConfig, description="Bounded queue before the generator.")
