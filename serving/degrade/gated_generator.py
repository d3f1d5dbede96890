"""The generator and intent stages behind a StageGate (gate.py): refused at once while no replica is up.

Both stages are the same Ray Serve deployment (the Generator replica serves generate, stream and
head_scores), so one gate guards both. While it is open, generation raises GeneratorUnavailable (503; the
pipeline answers with the fallback where the route's policy says so) and the intent head is skipped (the
retrieval vote decides alone), instead of each call queueing in the handle until a replacement replica runs.
A background task probes the stage's readiness while the gate is open and closes it when a replica answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from finserve.contracts import AdapterRef

from ..errors import GeneratorUnavailable
from ..inference.types import GenerationRequest, GenerationResult, StreamChunk
from ..intent import HeadScores
from ..stages import GeneratorStage, IntentStage, StageHealth
from .config import GeneratorBreakerConfig
from .gate import StageGate, replica_gone

log = logging.getLogger(__name__)

T = TypeVar("T")
OnChange = Callable[[bool], None]  # called with True when the gate opens, False when it closes


class GeneratorGate:
    """The gate with its I/O: the handle's replica count, the readiness probe and the open/close report."""

    def __init__(
        self,
        health: StageHealth,
        config: GeneratorBreakerConfig,
        on_change: OnChange,
        gate: StageGate | None = None,
    ) -> None:
        self.health = health
        self.config = config
        self.gate = gate or StageGate(config.probe_interval_s)
        self._on_change = on_change
        self._prober: asyncio.Task[None] | None = None

    @property
    def prober(self) -> asyncio.Task[None] | None:
        """The background probe while the gate is open (done once it closed it)."""
        return self._prober

    def check(self) -> None:
        """Raise GeneratorUnavailable while the gate is open (or opens now: the handle sees no replica)."""
        admitted, opened = self.gate.admit(self._replicas())
        if opened:
            self._opened("the Generator handle sees no running replica")
        if not admitted:
            raise self._refusal()

    def _refusal(self) -> GeneratorUnavailable:
        return GeneratorUnavailable(retry_after=max(1, math.ceil(self.config.probe_interval_s)))

    async def watch(self, call: Awaitable[T]) -> T:
        """``call``'s result; abandoned (GeneratorUnavailable) if, while it waits, the handle comes to see no
        replica at all: it is then queued for a replacement or sent to a dead replica, and would wait for
        the replacement (a call that hit a dead replica is put back in the queue by Ray Serve, no error)."""
        task = asyncio.ensure_future(call)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.config.watch_interval_s)
                if done:
                    return task.result()
                if self._replicas() == 0:
                    if self.gate.no_replica():
                        self._opened("the Generator handle sees no running replica")
                    raise self._refusal()
        finally:
            if not task.done():
                task.cancel()  # Ray Serve drops a call still queued for a replica when its caller cancels
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def failed(self, exc: BaseException) -> None:
        if self.gate.failed(exc):
            self._opened(type(exc).__name__)

    def succeeded(self) -> None:
        if self.gate.succeeded():
            self._closed()

    def _replicas(self) -> int | None:
        try:
            return self.health.replicas()
        except Exception:  # noqa: BLE001 - a hint only: without it the errors still open the gate
            return None

    def _opened(self, why: str) -> None:
        log.warning("generator unavailable (%s): generation refused until a readiness probe passes", why)
        self._on_change(True)
        if self._prober is None or self._prober.done():
            self._prober = asyncio.get_running_loop().create_task(self._probe_until_closed())

    def _closed(self) -> None:
        log.info("generator available again after %.1f s", self.gate.last_open_s)
        self._on_change(False)

    async def _probe_until_closed(self) -> None:
        while (wait := self.gate.probe_wait_s()) is not None:
            await asyncio.sleep(wait)
            if not self.gate.is_open:
                return
            self.gate.probe_started()
            ok = False
            try:
                async with asyncio.timeout(self.config.probe_timeout_s):
                    ok = bool(await self.health.ready())
            except Exception as exc:  # noqa: BLE001 - a failed probe keeps the gate open; the next one retries
                log.debug("generator probe failed: %s", type(exc).__name__)
            if self.gate.probe_finished(ok):
                self._closed()

    async def aclose(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._prober


class GatedGenerator:
    """GeneratorStage: ``inner``'s calls, refused at once while the gate is open."""

    def __init__(self, inner: GeneratorStage, gate: GeneratorGate) -> None:
        self.inner = inner
        self.gate = gate

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        self.gate.check()
        try:
            result = await self.gate.watch(self.inner.generate(request))
        except GeneratorUnavailable:
            raise
        except Exception as exc:
            self.gate.failed(exc)
            raise
        self.gate.succeeded()
        return result

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        self.gate.check()
        pieces = aiter(self.inner.stream(request))
        try:
            try:
                first = await self.gate.watch(anext(pieces))  # only the wait for the first piece can queue
            except StopAsyncIteration:
                return
            self.gate.succeeded()
            yield first
            async for piece in pieces:
                yield piece
        except GeneratorUnavailable:
            raise
        except Exception as exc:
            self.gate.failed(exc)
            raise
        finally:
            with contextlib.suppress(Exception):
                await pieces.aclose()  # type: ignore[attr-defined]


class GatedIntent:
    """IntentStage: the head's scores, or None (the retrieval vote decides alone) while the gate is open or
    when the replica died under the call."""

    def __init__(self, inner: IntentStage, gate: GeneratorGate) -> None:
        self.inner = inner
        self.gate = gate

    async def head_scores(self, masked_text: str, adapter: AdapterRef) -> HeadScores | None:
        try:
            self.gate.check()
        except GeneratorUnavailable:
            return None
        try:
            scores = await self.gate.watch(self.inner.head_scores(masked_text, adapter))
        except GeneratorUnavailable:
            return None
        except Exception as exc:
            self.gate.failed(exc)
            if replica_gone(exc):
                return None
            raise
        self.gate.succeeded()
        return scores
