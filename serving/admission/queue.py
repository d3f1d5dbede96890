"""The bounded queue in front of the generator: N generations at once, M waiting, the next one shed.

Without it every request waits for the generator however long the line is (at 32 concurrent clients
p95 was 28 s); shedding answers 503 with Retry-After at once, so clients and load balancers back off.
Counted per process (a gateway replica or the in-process stack); on Ray, the Generator deployment's
``max_queued_requests`` bounds the line across gateway replicas as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry, Counter

from ..errors import Overloaded
from .config import QueueConfig


def should_shed(running: int, waiting: int, config: QueueConfig) -> bool:
    """Whether one more request is refused: every slot is busy and the waiting line is full."""
    return running >= config.max_generating and waiting >= config.max_waiting


class Ticket:
    """One request's place: ``await wait()`` takes a slot (or raises Overloaded), ``release()`` gives it back
    (idempotent, and harmless for a ticket that never got a slot)."""

    def __init__(self, queue: AdmissionQueue) -> None:
        self._queue = queue
        self._held = False

    async def wait(self) -> None:
        await self._queue._acquire()
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._queue._release()


class AdmissionQueue:
    def __init__(self, config: QueueConfig, registry: CollectorRegistry) -> None:
        self.config = config
        self._slots = asyncio.Semaphore(config.max_generating)  # FIFO: a new arrival waits behind the line
        self.running = 0
        self.waiting = 0
        self.shed = Counter(
            "finserve_admission_shed",
            "Requests refused with 503 because the generator's queue was full.",
            registry=registry,
        )

    def ticket(self) -> Ticket:
        return Ticket(self)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        ticket = self.ticket()
        await ticket.wait()
        try:
            yield
        finally:
            ticket.release()

    async def _acquire(self) -> None:
        if should_shed(self.running, self.waiting, self.config):
            self.shed.inc()
            raise Overloaded(
                "the generator is at capacity; retry later", retry_after=self.config.retry_after_s
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1

    def _release(self) -> None:
        self.running -= 1
        self._slots.release()
