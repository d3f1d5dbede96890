"""The pipeline behind the generator gate: while the Generator has no replica, requests get the fallback at
once (cause generator_unavailable, audited) or, under policy error, a 503 with Retry-After; the gauge says
the breaker is open; generated answers return once the readiness probe passes.

Real guard, router, audit log and metrics; retrieval and the generator are scripted, and the Generator's
health (its replica count and readiness probe, which the Ray Serve handle gives) is a stand-in the test
drives: the real handle is killed for real in tests/serving/degrade/test_degrade_gated_generator.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from scripted_stages import Generator, Retrieval

from finserve.serving.audit import AuditConfig, AuditLog, read_records
from finserve.serving.config import DEFAULT_MODEL, ServingConfig
from finserve.serving.errors import GeneratorUnavailable
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.pipeline import Pipeline, RequestContext
from finserve.serving.routing import Router
from finserve.serving.schemas import ChatCompletionRequest
from finserve.serving.stages import LocalAudit, LocalGuard

DEADLOCK_GUARD_S = 60  # bounds a hang only
GAUGE = "finserve_circuit_breaker_open"


class Health:
    """The Generator handle's health as the test sets it: replicas seen, and a probe that answers when let."""

    def __init__(self) -> None:
        self.running = 1
        self.up = asyncio.Event()

    async def ready(self) -> bool:
        await self.up.wait()
        return True

    def replicas(self) -> int | None:
        return self.running


@pytest.fixture(scope="module")
def guard() -> LocalGuard:
    return LocalGuard(PIIGuard(ServingConfig().guard))


def _pipeline(tmp_path: Path, guard: LocalGuard, health: Health, policy: str = "fallback") -> Pipeline:
    cfg = ServingConfig()
    cfg.audit = AuditConfig(path=tmp_path / "audit.jsonl")
    # No response cache: the same question would otherwise be answered from it (degraded: cache).
    cache = cfg.degrade.response_cache.model_copy(update={"enabled": False})
    cfg.degrade = cfg.degrade.model_copy(update={"policy": policy, "response_cache": cache})
    return Pipeline(
        cfg,
        guard=guard,
        retrieval=Retrieval(),
        intent=None,  # type: ignore[arg-type] # the base adapter has no head
        generator=Generator(),  # type: ignore[arg-type]
        audit=LocalAudit(AuditLog(cfg.audit)),
        router=Router(cfg.router),
        generator_health=health,
    )


def _ask() -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model=DEFAULT_MODEL, messages=[{"role": "user", "content": "My card has not arrived yet"}]
    )


async def test_no_replica_means_the_fallback_at_once_then_generated_answers_return(
    tmp_path: Path, guard: LocalGuard
) -> None:
    health = Health()
    pipeline = _pipeline(tmp_path, guard, health)
    generator: Generator = pipeline.generator.inner  # type: ignore[attr-defined]
    gauge = lambda: pipeline.metrics.registry.get_sample_value(GAUGE, {"breaker": "generator"})  # noqa: E731
    first = await pipeline.chat(_ask(), RequestContext())
    assert first.finserve.degraded is None and generator.started == 1 and gauge() == 0

    health.running = 0  # the replica died: the handle sees none
    down = await pipeline.chat(_ask(), RequestContext())
    health.running = 1  # a replacement is listed, but has not answered the probe yet: still refused
    still = await pipeline.chat(_ask(), RequestContext())
    assert [down.finserve.degraded, still.finserve.degraded] == ["fallback", "fallback"]
    assert down.choices[0].message.content == "Cards arrive within 5 working days."
    assert generator.started == 1 and gauge() == 1  # nothing was sent to the generator meanwhile

    health.up.set()
    await asyncio.wait_for(asyncio.shield(pipeline.generator_gate.prober), DEADLOCK_GUARD_S)  # type: ignore[union-attr, arg-type]
    back = await pipeline.chat(_ask(), RequestContext())
    assert back.finserve.degraded is None and generator.started == 2 and gauge() == 0
    records = [r for r in read_records(pipeline.config.audit.path)]
    assert [(r["status"], r["degraded"], r["error"]) for r in records] == [
        (200, None, None),
        (200, "fallback", "generator_unavailable"),
        (200, "fallback", "generator_unavailable"),
        (200, None, None),
    ]
    await pipeline.aclose()


async def test_under_policy_error_the_client_gets_a_503_with_retry_after(
    tmp_path: Path, guard: LocalGuard
) -> None:
    health = Health()
    health.running = 0
    pipeline = _pipeline(tmp_path, guard, health, policy="error")
    with pytest.raises(GeneratorUnavailable) as refused:
        await pipeline.chat(_ask(), RequestContext())
    assert refused.value.retry_after == 1
    [record] = read_records(pipeline.config.audit.path)
    assert (record["status"], record["error"]) == (503, "generator_unavailable")
    await pipeline.aclose()
