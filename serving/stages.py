"""The typed async interfaces the pipeline composes, and in-process implementations of them.

In the Ray Serve app each stage is a deployment reached through a DeploymentHandle
(serving/app.py wraps handles in these same interfaces); in-process, the plain stage objects are
wrapped here. The pipeline cannot tell the difference, which is what lets one set of tests cover
the logic without Ray.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

from finserve.contracts import AdapterRef

from .audit.log import AuditLog, AuditRecord
from .audit.status import CachedRefusal
from .guard.chunk_cache import ChunkGuardCache
from .guard.engine import GuardResult, PIIGuard
from .inference.engine import Engine
from .inference.types import GenerationRequest, GenerationResult, StreamChunk
from .intent import HeadScores, IntentClassifier
from .retrieval import RetrievalResult, Retriever, SearchFilters


class GuardStage(Protocol):
    async def scan_many(self, texts: list[str]) -> list[GuardResult]: ...

    async def scan_chunks(self, texts: list[str]) -> list[GuardResult]:
        """Like scan_many, for retrieved knowledge chunks (which may be served from a cache)."""
        ...


class RetrievalStage(Protocol):
    async def search(self, masked_query: str, filters: SearchFilters | None = None) -> RetrievalResult: ...

    async def knowledge_texts(self) -> list[str]:
        """Every knowledge chunk a search can return (the index's answers), or [] when unknown."""
        ...

    async def embed_texts(self, texts: list[str]) -> list[list[float]]:
        """The retrieval embedder's unit vectors for ``texts`` (masked): shadow answers are compared with them."""
        ...


class IntentStage(Protocol):
    async def head_scores(self, masked_text: str, adapter: AdapterRef) -> HeadScores | None:
        """The adapter head's part of the intent (the pipeline mixes in the retrieval vote itself)."""
        ...


class GeneratorStage(Protocol):
    async def generate(self, request: GenerationRequest) -> GenerationResult: ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]: ...


class StageHealth(Protocol):
    """A remote stage's health as its caller sees it (the Ray Serve app's Generator handle)."""

    async def ready(self) -> bool:
        """The stage's readiness probe; on Ray Serve it waits for a replica to take it."""
        ...

    def replicas(self) -> int | None:
        """Replicas the caller could send a call to now, or None when it cannot tell."""
        ...


class AuditStage(Protocol):
    async def append(self, record: AuditRecord) -> str: ...

    async def ready(self) -> bool:
        """Whether a line can be appended now (file writable, torn tail sealed, disk not full)."""
        ...

    async def refusal(self) -> str | None:
        """Why a line could not be appended now, from cheap cached checks (None: go ahead). An early exit
        before the expensive stages; the append itself still fails closed."""
        ...

    async def close(self) -> None:
        """Seal the log with a final signed checkpoint (at shutdown)."""
        ...


class LocalGuard:
    """The guard called in this process (a few ms of CPU: cheaper inline than any hop)."""

    def __init__(self, guard: PIIGuard) -> None:
        self.guard = guard
        self.chunks = ChunkGuardCache(guard.scan_each)

    async def scan_many(self, texts: list[str]) -> list[GuardResult]:
        return self.guard.scan_many(texts)

    async def scan_chunks(self, texts: list[str]) -> list[GuardResult]:
        return self.chunks.scan_chunks(texts)


class LocalRetrieval:
    def __init__(self, retriever: Retriever) -> None:
        self.retriever = retriever

    async def search(self, masked_query: str, filters: SearchFilters | None = None) -> RetrievalResult:
        return await self.retriever.search(masked_query, filters)

    async def knowledge_texts(self) -> list[str]:
        return await self.retriever.knowledge_texts()

    async def embed_texts(self, texts: list[str]) -> list[list[float]]:
        return await self.retriever.embed_texts(texts)


class LocalIntent:
    def __init__(self, classifier: IntentClassifier) -> None:
        self.classifier = classifier

    async def head_scores(self, masked_text: str, adapter: AdapterRef) -> HeadScores | None:
        return await self.classifier.head_scores(masked_text, adapter)


class LocalGenerator:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        await self.engine.ensure_adapter(request.adapter)
        return await self.engine.generate(request)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        await self.engine.ensure_adapter(request.adapter)
        async for chunk in self.engine.stream(request):
            yield chunk


class LocalAudit:
    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._lock = asyncio.Lock()
        self._refusal = CachedRefusal(lambda: asyncio.to_thread(log.refusal), log.config.status_ttl_s)

    async def refusal(self) -> str | None:
        return await self._refusal.get()

    async def append(self, record: AuditRecord) -> str:
        async with self._lock:
            return await asyncio.to_thread(self.log.append, record)

    async def ready(self) -> bool:
        async with self._lock:
            return await asyncio.to_thread(self.log.ready)

    async def close(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self.log.close)
