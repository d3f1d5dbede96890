"""The typed async interfaces the pipeline composes, and the stage classes that carry a decision of their own.

In-process (serving/local.py) the pipeline gets the retriever and the intent classifier as they are and
the guard, generator and audit log wrapped in the classes below. In the Ray Serve app (serving/app.py)
each deployment derives from the same class, and the gateway reaches it through one typed adapter over
its DeploymentHandle (serving/ray_handles.py). The pipeline cannot tell the difference, which is what lets
one set of tests cover the logic without Ray.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Protocol

from finserve.contracts import AdapterRef

from .audit.log import AuditLog, AuditRecord
from .guard.chunk_cache import ChunkGuardCache
from .guard.results import GuardResult
from .inference.engine import Engine
from .inference.types import GenerationRequest, GenerationResult, StreamChunk
from .intent import HeadScores
from .retrieval import RetrievalResult, SearchFilters

if TYPE_CHECKING:
    from .guard.engine import PIIGuard  # loads Presidio and spaCy: only the Guard replica needs them


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


# ---- the stage implementations that carry a decision of their own ----
#
# The retriever and the intent classifier satisfy RetrievalStage and IntentStage as they are and are passed
# to the pipeline directly. The classes below add what the plain objects lack; the Ray deployments in app.py
# derive from them (adding only process setup and spans), so both paths run this code.


class LocalGuard:
    """The guard stage: Presidio plus the knowledge-chunk cache (chunk texts only, never user input).

    Inline by default: a scan is a few ms of CPU, cheaper than any hop or thread handoff. ``in_thread``
    scans in a worker thread instead, as the Guard replica does, so its event loop keeps taking calls.
    """

    def __init__(self, guard: PIIGuard, *, in_thread: bool = False) -> None:
        self.guard = guard
        self.chunks = ChunkGuardCache(guard.scan_each)
        self._in_thread = in_thread

    async def scan_many(self, texts: list[str]) -> list[GuardResult]:
        return await self._run(self.guard.scan_many, texts)

    async def scan_chunks(self, texts: list[str]) -> list[GuardResult]:
        return await self._run(self.chunks.scan_chunks, texts)

    async def _run(
        self, scan: Callable[[list[str]], list[GuardResult]], texts: list[str]
    ) -> list[GuardResult]:
        return await asyncio.to_thread(scan, texts) if self._in_thread else scan(texts)


class LocalGenerator:
    """The generator stage over an engine: starts it once, then loads each request's adapter before decoding.

    A Generator replica that Ray Serve starts in place of a dead one gets its queued requests and the
    readiness probes at once: one load, the others wait. Unlocked, each call loaded its own model and
    swapped the engine's runner under a running decode, whose kernel then read freed weights (SIGSEGV).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._started = False
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        if self._started:
            return
        async with self._start_lock:
            if not self._started:
                await self.engine.start()
                self._started = True

    async def stop(self) -> None:
        async with self._start_lock:
            await self.engine.stop()
            self._started = False  # a later start() loads it again (an app's lifespan may run twice)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        await self.start()
        await self.engine.ensure_adapter(request.adapter)
        return await self.engine.generate(request)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        await self.start()
        await self.engine.ensure_adapter(request.adapter)
        async for chunk in self.engine.stream(request):
            yield chunk


class LocalAudit:
    """The audit stage: one append at a time, off the event loop (a durable write is an fsync)."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._lock = asyncio.Lock()

    async def refusal(self) -> str | None:
        # No lock: cheap checks (statvfs, access) that never touch the file an append is writing.
        return await asyncio.to_thread(self.log.refusal)

    async def append(self, record: AuditRecord) -> str:
        async with self._lock:
            return await asyncio.to_thread(self.log.append, record)

    async def ready(self) -> bool:
        async with self._lock:
            return await asyncio.to_thread(self.log.ready)

    async def close(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self.log.close)
