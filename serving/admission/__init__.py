"""Admission: who may send how much (rate limits) and how many may wait (the bounded generator queue).

The gateway and the gRPC servicer call :meth:`Admission.admit` once per request, after validation;
the pipeline holds a :class:`~.queue.AdmissionQueue` slot around each generation.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from ..errors import InvalidRequest, RateLimited
from ..schemas import ChatCompletionRequest
from .config import AdmissionConfig, QueueConfig, RateLimitConfig, RateLimits
from .queue import AdmissionQueue
from .ratelimit import Decision, RateLimiter

__all__ = [
    "Admission",
    "AdmissionConfig",
    "AdmissionQueue",
    "Decision",
    "QueueConfig",
    "RateLimitConfig",
    "RateLimiter",
    "RateLimits",
    "limit_key",
    "requested_tokens",
]


def requested_tokens(req: ChatCompletionRequest, default: int, limit: int | None = None) -> int:
    """What a request is charged against its tokens-per-minute limit: its max tokens, up front.

    Over ``limit`` (gateway.max_tokens_limit) it is a 400 naming max_tokens, before any limit is charged:
    a bad request is reported as one, never as a used-up rate limit."""
    tokens = req.max_completion_tokens or req.max_tokens or default
    if limit is not None and tokens > limit:
        field = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
        raise InvalidRequest(f"{field} must be at most {limit}", param=field)
    return tokens


def limit_key(principal: str | None, client_address: str | None) -> str:
    """Whom the per-principal limit counts: the principal, or without one the client's address."""
    if principal:
        return f"principal:{principal}"
    return f"address:{client_address or 'unknown'}"


class Admission:
    """One per pipeline (per process): shared by REST and gRPC."""

    def __init__(self, config: AdmissionConfig, registry: CollectorRegistry) -> None:
        self.limiter = RateLimiter(config.rate, registry)
        self.queue = AdmissionQueue(config.queue, registry)

    async def admit(
        self, principal: str | None, client_address: str | None, tenant: str, requests: int, tokens: int
    ) -> dict[str, str]:
        """The x-ratelimit-* headers for the answer; raises RateLimited (429) when a limit is full."""
        decision = await self.limiter.check(limit_key(principal, client_address), tenant, requests, tokens)
        headers = decision.headers()
        if not decision.allowed:
            raise RateLimited(
                f"rate limit exceeded ({decision.exceeded} per minute); retry later",
                retry_after=decision.retry_after or 1,
                headers=headers,
            )
        return headers
