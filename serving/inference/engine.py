"""The engine interface every generator backend implements, and what the backends share: ``collect``
turns a stream into a whole completion. The builder that picks a backend is builder.py: the backends
import this module, so it imports none of them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from finserve.contracts import AdapterRef

from .types import GenerationRequest, GenerationResult, StreamChunk


@runtime_checkable
class Engine(Protocol):
    """An LLM with LoRA adapters loaded side by side; each request names its adapter.

    ``ensure_adapter`` loads a version from the registry before first use and raises
    ``AdapterNotFound`` / ``AdapterCorrupt`` (from finserve.contracts) or ``AdapterIncompatible``;
    it never falls back to the base model. ``generate`` and ``stream`` also refuse an adapter that
    is not loaded rather than serving the base model in its place.
    """

    async def start(self) -> None: ...

    async def generate(self, req: GenerationRequest) -> GenerationResult: ...

    def stream(self, req: GenerationRequest) -> AsyncIterator[StreamChunk]: ...

    async def ensure_adapter(self, ref: AdapterRef) -> None: ...

    def adapters(self) -> list[AdapterRef]: ...

    def ready(self) -> bool: ...

    async def stop(self) -> None: ...

    def queue_depth(self) -> int: ...


async def collect(stream: AsyncIterator[StreamChunk], adapter: AdapterRef) -> GenerationResult:
    """The whole completion of ``stream``, whose last chunk carries finish_reason and usage, with the
    times of its first and last text (time-to-first-token and inter-token metrics)."""
    parts: list[str] = []
    final: StreamChunk | None = None
    t0 = time.perf_counter()
    first: float | None = None
    last: float | None = None
    async for chunk in stream:
        parts.append(chunk.delta)
        if chunk.delta:
            last = time.perf_counter() - t0
            first = last if first is None else first
        if chunk.finish_reason is not None:
            final = chunk
    assert final is not None and final.usage is not None and final.finish_reason is not None
    return GenerationResult(
        text="".join(parts),
        prompt_tokens=final.usage.prompt_tokens,
        completion_tokens=final.usage.completion_tokens,
        cached_prompt_tokens=final.usage.cached_tokens,
        finish_reason=final.finish_reason,
        adapter=adapter,
        first_token_s=first,
        last_token_s=last,
    )
