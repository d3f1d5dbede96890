"""Scripted stand-ins for retrieval and the generator, around the real guard, router, audit log and app.

A fake, and why: the real retriever and engine run in the slow tests; these answer at once, or (generator
``hold``) wait until released, which is how a busy generator is made without timing anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any

from finserve.contracts import AdapterNotFound
from finserve.serving.audit import AuditConfig, AuditLog
from finserve.serving.config import ServingConfig
from finserve.serving.inference.types import GenerationRequest, GenerationResult, StreamChunk, Usage
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
    """Scripted ``words``, answered at once, as one text or a stream of words (usage on the last chunk).

    With ``hold`` set, generate waits until ``release`` is set: a generation that occupies its slot. With
    ``hold_stream_at``, the stream stops before that word (``holding`` is set there) until the client goes
    away: only a closed or cancelled stream gets past. ``timings`` are the (first, last) token times an
    engine's collect() reports. Only the ``adapters`` named load (None: any), as the real engine loads only
    what the registry holds.
    """

    def __init__(
        self,
        words: list[str] | None = None,
        *,
        hold_stream_at: int | None = None,
        timings: tuple[float, float] | None = None,
        adapters: Collection[str] | None = ("base@0.0.0",),
    ) -> None:
        self.words = words or ["Your", "card", "arrives", "soon."]
        self.adapters = adapters
        self.hold_stream_at = hold_stream_at
        self.timings = timings
        self.hold = False
        self.started = 0
        self.calls = 0  # generate and stream calls, answered or not
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        self.calls += 1
        self._check_adapter(request)
        self.started += 1
        if self.hold:
            await self.release.wait()
        first, last = self.timings or (None, None)
        return GenerationResult(
            text=" ".join(self.words),
            prompt_tokens=10,
            completion_tokens=len(self.words),
            finish_reason="stop",
            adapter=request.adapter,
            first_token_s=first,
            last_token_s=last,
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        self.calls += 1
        self._check_adapter(request)
        for i, word in enumerate(self.words):
            if i == self.hold_stream_at:
                self.holding.set()
                await asyncio.Event().wait()  # never set
            last = i == len(self.words) - 1
            yield StreamChunk(
                delta=word + ("" if last else " "),
                finish_reason="stop" if last else None,
                usage=Usage(prompt_tokens=10, completion_tokens=i + 1) if last else None,
            )

    def _check_adapter(self, request: GenerationRequest) -> None:
        if self.adapters is not None and str(request.adapter) not in self.adapters:
            raise AdapterNotFound(f"{request.adapter} is not in the registry")


def scripted_pipeline(
    cfg: ServingConfig,
    tmp_path: Path,
    guard: LocalGuard,
    *,
    generator: Generator | None = None,
    retrieval: Retrieval | None = None,
    audit: dict[str, Any] | None = None,
) -> Pipeline:
    """A Pipeline with the real guard, router and audit log (under tmp_path; ``audit``: more AuditConfig
    fields) and the scripted stages."""
    cfg.audit = AuditConfig(path=tmp_path / "audit.jsonl", **(audit or {}))
    return Pipeline(
        cfg,
        guard=guard,
        retrieval=retrieval or Retrieval(),
        intent=None,  # type: ignore[arg-type]  # no adapter head: the base adapter makes no head call
        generator=generator or Generator(),
        audit=LocalAudit(AuditLog(cfg.audit)),
        router=Router(cfg.router),
    )
