"""Scripted stand-ins for retrieval and the generator, around the real guard, router, audit log and app.

A fake, and why: the real retriever and engine run in the slow tests; these answer at once, or (generator
``hold``) wait until released, which is how a busy generator is made without timing anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from finserve.contracts import AdapterNotFound
from finserve.serving.audit import AuditConfig, AuditLog
from finserve.serving.config import ServingConfig
from finserve.serving.inference.types import GenerationRequest, GenerationResult, StreamChunk
from finserve.serving.pipeline import Pipeline
from finserve.serving.retrieval import Hit, RetrievalResult, SearchFilters
from finserve.serving.routing import Router
from finserve.serving.stages import LocalAudit, LocalGuard


class Retrieval:
    """One card_arrival answer for every query; ``cache`` is the tier the result reports."""

    def __init__(self, cache: str = "off") -> None:
        self.cache = cache

    async def search(self, masked_query: str, filters: SearchFilters | None = None) -> RetrievalResult:
        hit = Hit(
            id="answer:card_arrival",
            text="Cards arrive within 5 working days.",
            intent="card_arrival",
            kind="answer",
            tenant="default",
            score=0.8,
        )
        return RetrievalResult(
            hits=[hit],
            examples=[hit.model_copy(update={"kind": "example"})],
            cache=self.cache,
            index_version="idx-test-1",
        )

    async def knowledge_texts(self) -> list[str]:
        return []


class Generator:
    """Answers at once, or with `hold` set waits until released: a generation that occupies its slot."""

    def __init__(self) -> None:
        self.hold = False
        self.started = 0
        self.release = asyncio.Event()

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if str(request.adapter) != "base@0.0.0":  # as the real engine: only what the registry holds loads
            raise AdapterNotFound(f"{request.adapter} is not in the registry")
        self.started += 1
        if self.hold:
            await self.release.wait()
        return GenerationResult(
            text="Your card arrives soon.",
            prompt_tokens=10,
            completion_tokens=5,
            finish_reason="stop",
            adapter=request.adapter,
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        yield StreamChunk(delta="Soon.", finish_reason="stop")


def scripted_pipeline(cfg: ServingConfig, tmp_path: Path, guard: LocalGuard) -> Pipeline:
    """A Pipeline with the real guard, router and audit log (under tmp_path) and the scripted stages."""
    cfg.audit = AuditConfig(path=tmp_path / "audit.jsonl")
    return Pipeline(
        cfg,
        guard=guard,
        retrieval=Retrieval(),
        intent=None,
        generator=Generator(),  # type: ignore[arg-type]
        audit=LocalAudit(AuditLog(cfg.audit)),
        router=Router(cfg.router),
    )
