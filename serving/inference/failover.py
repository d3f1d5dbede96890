"""A generator pool of providers tried in order, each behind a circuit breaker.

A provider that fails (down, erroring, or slower than its ``timeout_s``) is skipped for ``retry_s``, then
probed by one request. A stream fails over only until its first piece: after that the text is the client's
and a failure ends the stream. The answer says which provider gave it (GenerationResult / StreamChunk
``provider``), which the pipeline puts in the x-finserve-provider header and the audit line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from finserve.contracts import AdapterCorrupt, AdapterNotFound, AdapterRef

from ..breaker import CircuitBreaker
from .engine import Engine
from .errors import AdapterIncompatible, PromptTooLong, ProvidersUnavailable
from .types import GenerationRequest, GenerationResult, StreamChunk

log = logging.getLogger(__name__)

# The request's own fault (or the adapter's): the next provider would refuse it the same way.
_NOT_THE_PROVIDER = (PromptTooLong, AdapterNotFound, AdapterCorrupt, AdapterIncompatible)


@dataclass
class Provider:
    name: str
    engine: Engine
    breaker: CircuitBreaker
    timeout_s: float | None = None


class FailoverEngine:
    """The Engine protocol over several engines."""

    def __init__(self, providers: list[Provider]) -> None:
        if not providers:
            raise ValueError("a failover pool needs at least one provider")
        self.providers = providers

    def _candidates(self) -> list[Provider]:
        return [p for p in self.providers if p.breaker.allow()]

    def _all_down(self) -> ProvidersUnavailable:
        wait = min(p.breaker.retry_after() for p in self.providers) if self.providers else 5.0
        return ProvidersUnavailable("every generator provider is unavailable", retry_after_s=max(1.0, wait))

    def _failed(self, p: Provider, exc: BaseException) -> None:
        p.breaker.record_failure()
        log.warning(
            "provider %s failed (%s): skipped for %.0f s", p.name, type(exc).__name__, p.breaker.retry_s
        )

    async def start(self) -> None:
        results = await asyncio.gather(*(p.engine.start() for p in self.providers), return_exceptions=True)
        for p, r in zip(self.providers, results, strict=True):
            if isinstance(r, BaseException):
                self._failed(p, r)
        if all(isinstance(r, BaseException) for r in results):
            raise results[0]  # type: ignore[misc]

    async def stop(self) -> None:
        await asyncio.gather(*(p.engine.stop() for p in self.providers), return_exceptions=True)

    def ready(self) -> bool:
        return any(p.engine.ready() for p in self.providers)

    def queue_depth(self) -> int:
        return sum(p.engine.queue_depth() for p in self.providers)

    def adapters(self) -> list[AdapterRef]:
        return sorted({a for p in self.providers for a in p.engine.adapters()}, key=str)

    async def ensure_adapter(self, ref: AdapterRef) -> None:
        """Fine when any provider can serve ``ref``; the first refusal is raised when none can."""
        first: BaseException | None = None
        for p in self.providers:
            try:
                await p.engine.ensure_adapter(ref)
                return
            except Exception as exc:  # noqa: BLE001 - another provider may have it
                first = first or exc
        assert first is not None
        raise first

    async def generate(self, req: GenerationRequest) -> GenerationResult:
        for p in self._candidates():
            try:
                async with asyncio.timeout(p.timeout_s):
                    await p.engine.ensure_adapter(req.adapter)
                    result = await p.engine.generate(req)
            except _NOT_THE_PROVIDER:
                raise
            except Exception as exc:  # noqa: BLE001 - down, slow or broken: the next provider answers
                self._failed(p, exc)
                continue
            p.breaker.record_success()
            return result.model_copy(update={"provider": p.name})
        raise self._all_down()

    async def stream(self, req: GenerationRequest) -> AsyncIterator[StreamChunk]:
        for p in self._candidates():
            pieces = aiter(p.engine.stream(req))
            try:
                async with asyncio.timeout(p.timeout_s):
                    await p.engine.ensure_adapter(req.adapter)
                    first = await anext(pieces)
            except _NOT_THE_PROVIDER:
                raise
            except Exception as exc:  # noqa: BLE001 - nothing was sent yet: the next provider answers
                self._failed(p, exc)
                await _close(pieces)
                continue
            p.breaker.record_success()
            try:
                yield first.model_copy(update={"provider": p.name})
                async for piece in pieces:
                    yield piece
            except Exception as exc:
                self._failed(p, exc)  # text is out: this stream ends in an error, the next request fails over
                raise
            finally:
                await _close(pieces)  # also when the client left mid-answer: the upstream request ends now
            return
        raise self._all_down()


async def _close(it: AsyncIterator) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - closing a failed stream: nothing more to learn from it
            pass
