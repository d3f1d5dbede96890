"""Degradation settings: deadlines, the per-route policy when generation fails, the response cache."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from finserve.contracts import StrictModel

Policy = Literal["fallback", "error"]


class ResponseCacheConfig(StrictModel):
    """Answers of deterministic (greedy) requests, kept so a repeated question is answered while the generator
    is down. Keys are hashes of masked text; values are the guarded (masked) answer only."""

    enabled: bool = Field(True, description="Store and look up answers of greedy requests (temperature 0).")
    use: Literal["on_failure", "always"] = Field(
        "on_failure",
        description="on_failure: a cached answer is served only when generation fails or runs out of time "
        "(marked degraded=cache); always: a hit is served instead of generating (no tokens spent, the "
        "canary's metrics then see fewer generations).",
    )
    l1_max_entries: int = Field(4096, ge=0, description="Answers kept in this process (0: no L1).")
    l1_ttl_s: float = Field(600.0, gt=0, description="Seconds an L1 entry lives.")
    l2_ttl_s: float = Field(
        86400.0,
        gt=0,
        description="Seconds an answer lives in Redis (the retrieval config's redis_url; no URL: no L2).",
    )


class GeneratorBreakerConfig(StrictModel):
    """The gateway's circuit breaker on the Generator deployment (Ray Serve only): while no replica is up,
    requests get the fallback at once instead of waiting in the handle's queue for a replacement."""

    enabled: bool = Field(
        True,
        description="Open on the errors a dead or unreachable replica raises (ActorDiedError, "
        "ActorUnavailableError) or when the handle sees no running replica; refuse generation while open.",
    )
    probe_interval_s: float = Field(
        1.0,
        gt=0,
        description="Seconds between readiness probes of the Generator while the breaker is open (a probe "
        "that fails or times out is repeated after this); the first probe starts when it opens.",
    )
    watch_interval_s: float = Field(
        0.1,
        gt=0,
        description="How often a call waiting for the Generator checks that its handle still sees a running "
        "replica; when none is left the call is abandoned (the fallback answers) instead of waiting in the "
        "queue for a replacement.",
    )
    probe_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Most a probe waits: it queues until a replacement replica runs and has loaded its "
        "model, which is what closes the breaker.",
    )


class DegradeConfig(StrictModel):
    """What the pipeline does when a stage is slow or down."""

    deadline_default_ms: int = Field(
        30_000,
        ge=100,
        description="End-to-end deadline of a request that names none (x-finserve-deadline-ms).",
    )
    deadline_min_ms: int = Field(100, ge=1, description="A client's deadline below this is raised to it.")
    deadline_max_ms: int = Field(
        120_000,
        ge=100,
        description="A client's deadline above this is lowered to it (also caps the default).",
    )
    retrieval_timeout_ms: int = Field(
        5_000,
        ge=1,
        description="Most the retrieval stage may take (within the deadline); past it the request "
        "fails with 504, since without retrieval there is no curated answer to fall back on.",
    )
    generate_timeout_ms: int | None = Field(
        None,
        ge=1,
        description="Most generation may take (within the deadline); None: whatever the deadline "
        "leaves. For streams it bounds the wait for each piece, not the whole answer.",
    )
    fallback_reserve_ms: int = Field(
        200,
        ge=0,
        description="Time kept back from generation so the fallback answer can still be guarded, "
        "audited and sent inside the deadline.",
    )
    policy: Policy = Field(
        "fallback",
        description="When generation fails, times out or is shed: fallback = the bank's curated "
        "answer of the classified intent (marked degraded), error = 503/504 as the error says.",
    )
    route_policy: dict[str, Policy] = Field(
        default_factory=dict, description="Per model (route) name: overrides `policy`."
    )
    response_cache: ResponseCacheConfig = Field(
        default_factory=ResponseCacheConfig, description="Answers kept for greedy requests."
    )
    generator_breaker: GeneratorBreakerConfig = Field(
        default_factory=GeneratorBreakerConfig,
        description="Fail fast while the Generator deployment has no replica (Ray Serve app).",
    )

    @model_validator(mode="after")
    def _bounds(self) -> DegradeConfig:
        if self.deadline_min_ms > self.deadline_max_ms:
            raise ValueError("deadline_min_ms must be at most deadline_max_ms")
        return self

    def policy_for(self, model: str | None) -> Policy:
        return self.route_policy.get(model or "", self.policy)
