"""Batch collection: concurrent requests share a batch, the queue is bounded, stop fails the waiting."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import pytest

from finserve.serving.inference.errors import EngineNotReady, EngineOverloaded
from finserve.serving.inference.scheduler import BatchScheduler


@dataclass(eq=False)
class Item:
    n: int
    cancelled: bool = False
    error: BaseException | None = None
    thread: str = ""
    ran: asyncio.Event = field(default_factory=asyncio.Event)


class Recorder:
    """A run function that records each batch (and its thread) and can be held at a gate."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.done: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def run(self, items: list[Item]) -> None:
        self.gate.wait(5)
        self.batches.append([i.n for i in items])
        for item in items:
            item.thread = threading.current_thread().name

    def finished(self, items: list[Item]) -> None:
        self.done.append([i.n for i in items])
        for item in items:
            item.ran.set()


def make(rec: Recorder, **kw: object) -> BatchScheduler[Item]:
    opts = dict(max_batch=3, wait_s=0.2, max_queue=10) | kw
    return BatchScheduler(rec.run, rec.finished, fail=lambda item, exc: setattr(item, "error", exc), **opts)


async def test_concurrent_submissions_share_a_batch_up_to_max() -> None:
    rec = Recorder()
    sched = make(rec)
    await sched.start()
    items = [Item(i) for i in range(5)]
    for item in items:
        sched.submit(item)
    await asyncio.wait_for(asyncio.gather(*(i.ran.wait() for i in items)), 10)
    await sched.stop()
    assert rec.batches == [[0, 1, 2], [3, 4]]
    assert all(i.thread.startswith("finserve-decode") for i in items)  # never on the event loop


async def test_cancelled_items_are_skipped_but_released() -> None:
    rec = Recorder()
    sched = make(rec)
    await sched.start()
    items = [Item(0), Item(1, cancelled=True), Item(2)]
    for item in items:
        sched.submit(item)
    await asyncio.wait_for(asyncio.gather(*(i.ran.wait() for i in items)), 10)
    await sched.stop()
    assert rec.batches == [[0, 2]]
    assert rec.done == [[0, 1, 2]]


async def test_full_queue_refuses_and_depth_counts_queued_and_running() -> None:
    rec = Recorder()
    rec.gate.clear()  # hold the first batch in the worker
    sched = make(rec, max_batch=1, wait_s=0.0, max_queue=2)
    await sched.start()
    first = Item(0)
    sched.submit(first)
    while sched.running() == 0:
        await asyncio.sleep(0.01)
    sched.submit(Item(1))
    sched.submit(Item(2))
    assert sched.depth() == 3
    with pytest.raises(EngineOverloaded):
        sched.submit(Item(3))
    rec.gate.set()
    await asyncio.wait_for(first.ran.wait(), 10)
    await sched.stop()


async def test_stop_fails_waiting_items_and_refuses_new_ones() -> None:
    rec = Recorder()
    rec.gate.clear()
    sched = make(rec, max_batch=1, wait_s=0.0)
    await sched.start()
    running, waiting = Item(0), Item(1)
    sched.submit(running)
    while sched.running() == 0:
        await asyncio.sleep(0.01)
    sched.submit(waiting)
    stopping = asyncio.create_task(sched.stop())
    await asyncio.sleep(0)  # stop() flags the running batch before its first await
    assert running.cancelled  # the running batch is told to wind down
    rec.gate.set()
    await asyncio.wait_for(stopping, 10)
    assert isinstance(waiting.error, EngineNotReady)
    with pytest.raises(EngineNotReady):
        sched.submit(Item(2))
