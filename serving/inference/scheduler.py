"""Collects concurrent requests into batches and runs each batch in one worker thread.

The first request of a batch waits at most ``wait_s`` for others (up to ``max_batch``); the
batch then runs to completion while new requests queue for the next one. The asyncio loop only
hands work over, so it stays responsive while torch computes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, Protocol, TypeVar

from .errors import EngineNotReady, EngineOverloaded

log = logging.getLogger(__name__)


class Cancellable(Protocol):
    cancelled: bool


T = TypeVar("T", bound=Cancellable)


class BatchScheduler(Generic[T]):
    """``run(batch)`` is blocking and called in a dedicated thread; ``done(batch)`` on the loop after."""

    def __init__(
        self,
        run: Callable[[list[T]], None],
        done: Callable[[list[T]], None],
        *,
        max_batch: int,
        wait_s: float,
        max_queue: int,
        fail: Callable[[T, BaseException], None],
    ) -> None:
        self._run, self._done, self._fail = run, done, fail
        self.max_batch, self.wait_s, self.max_queue = max_batch, wait_s, max_queue
        self._queue: asyncio.Queue[T] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._running: list[T] = []
        self.batches_run = 0

    @property
    def started(self) -> bool:
        return self._task is not None and not self._task.done()

    def depth(self) -> int:
        """Requests queued or being decoded."""
        queued = self._queue.qsize() if self._queue is not None else 0
        return queued + len(self._running)

    def running(self) -> int:
        return len(self._running)

    async def start(self) -> None:
        if self.started:
            return
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finserve-decode")
        self._task = asyncio.create_task(self._loop(), name="finserve-batch-scheduler")

    def submit(self, item: T) -> None:
        if not self.started or self._queue is None:
            raise EngineNotReady("the generator is not running")
        if self._queue.qsize() >= self.max_queue:
            raise EngineOverloaded(f"generator queue is full ({self.max_queue} waiting)")
        self._queue.put_nowait(item)

    async def stop(self) -> None:
        """Cancel the running batch's rows, fail queued requests, and wait for the worker to exit."""
        for item in self._running:
            item.cancelled = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._queue is not None:
            while not self._queue.empty():
                item = self._queue.get_nowait()
                self._fail(item, EngineNotReady("the generator stopped"))
                self._done([item])
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, wait=True)
        self._task = self._queue = self._executor = None

    async def _collect(self) -> list[T]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while len(batch) < self.max_batch:
            # Whatever is already queued joins without waiting; then wait out the window.
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [item for item in batch if not item.cancelled]
            self._running = live
            try:
                if live:
                    self.batches_run += 1
                    await asyncio.shield(loop.run_in_executor(self._executor, self._run, live))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # run() reports per row; this is a bug in run itself
                log.exception("batch of %d failed", len(live))
                for item in live:
                    self._fail(item, exc)
            finally:
                self._running = []
                self._done(batch)
