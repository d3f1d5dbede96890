"""The CPU engine: transformers + PEFT, several LoRA adapters side by side, batched and streamed."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

from finserve.contracts import AdapterRef, AdapterRegistry
from finserve.serving.paths import registry_root

from .adapter_files import fetch_adapter
from .adapter_slots import AdapterSlots
from .base_model import gguf_path
from .chat import render_prompt
from .config import GeneratorConfig
from .decoder import BatchCounts, decode_batch
from .engine import collect
from .errors import EngineNotReady, PromptTooLong
from .heap import trim_heap
from .model_runner import ModelRunner
from .sampling import SamplingSpec
from .scheduler import BatchScheduler
from .types import EngineStats, FinishReason, GenerationRequest, GenerationResult, StreamChunk, Usage

log = logging.getLogger(__name__)

# Most often the worker thread gives the heap's free pages back after a batch (see _decode).
HEAP_TRIM_INTERVAL_S = 5.0


class _Job:
    """One admitted request: what the decoder needs, and a queue its results flow back through."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        req: GenerationRequest,
        adapter_name: str | None,
        prompt_ids: list[int],
        max_new_tokens: int,
    ) -> None:
        self.loop = loop
        self.ref = req.adapter
        self.prompt_ids = prompt_ids
        self.adapter_name = adapter_name
        self.max_new_tokens = max_new_tokens
        self.sampling = SamplingSpec(temperature=req.temperature, top_p=req.top_p, seed=req.seed)
        self.stops = list(req.stop or [])
        self.cancelled = False
        self.cached_tokens = 0
        self.events: asyncio.Queue[StreamChunk | BaseException] = asyncio.Queue()

    # Called from the decode thread: hand over to the event loop.
    def on_delta(self, text: str) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, StreamChunk(delta=text))

    def on_finish(self, reason: FinishReason, completion_tokens: int) -> None:
        usage = Usage(
            prompt_tokens=len(self.prompt_ids),
            completion_tokens=completion_tokens,
            cached_tokens=self.cached_tokens,
        )
        self.loop.call_soon_threadsafe(self.events.put_nowait, StreamChunk(finish_reason=reason, usage=usage))

    def on_error(self, exc: BaseException) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, exc)


class TransformersEngine:
    """Implements :class:`~finserve.serving.inference.engine.Engine` on CPU (or any torch device)."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self.registry = AdapterRegistry(registry_root(config.registry))
        self.runner: ModelRunner | None = None
        self._slots = AdapterSlots(config.max_loaded_adapters)
        self._adapter_lock = asyncio.Lock()
        # The start in progress: concurrent start() calls await this one task, so one model loads, not one each.
        self._starting: asyncio.Future[None] | None = None
        self._totals = BatchCounts()  # summed over batches, for stats()
        self._totals_lock = threading.Lock()
        self._trimmed_at = float("-inf")  # the worker thread's last heap trim (time.monotonic)
        self._loads = 0
        self._scheduler: BatchScheduler[_Job] = BatchScheduler(
            self._decode,
            self._release,
            max_batch=config.max_batch_size,
            wait_s=config.batch_wait_ms / 1000.0,
            max_queue=config.max_queue,
            fail=lambda job, exc: job.on_error(exc),
        )

    # ---- lifecycle ----

    async def start(self) -> None:
        if self.ready():
            return
        # One start at a time, shielded from its callers: a caller cancelled while the model loads (a readiness
        # probe whose client gave up) used to release the lock with the load still running in its thread, and
        # the next caller then started a second load beside it, then a third: on a busy machine each load
        # slowed the others until none finished. Every caller now awaits the same start.
        if self._starting is None or self._starting.done():
            self._starting = asyncio.ensure_future(self._start_once())
        await asyncio.shield(self._starting)

    async def _start_once(self) -> None:
        # No lock: a new _start_once task is made only when none is running (start() above).
        if self.ready():
            return
        if self.runner is None:
            runner = ModelRunner(self._model_source(), self.config.cpu)
            await asyncio.to_thread(runner.load)
            self.runner = runner
            self._loads += 1
        await self._scheduler.start()
        for ref in self.config.preload_refs():
            await self.ensure_adapter(ref)

    async def stop(self) -> None:
        await self._scheduler.stop()

    def ready(self) -> bool:
        return self.runner is not None and self._scheduler.started

    def _model_source(self) -> Path:
        """A transformers folder (model_dir), else a GGUF file (cpu.model_file, or the packaged SmolLM2 one)."""
        if self.config.model_dir:
            return Path(self.config.model_dir)
        path = Path(self.config.cpu.model_file) if self.config.cpu.model_file else gguf_path()
        if not path.is_file():
            raise FileNotFoundError(f"GGUF model {path} does not exist")
        return path

    def queue_depth(self) -> int:
        return self._scheduler.depth()

    @property
    def batches_run(self) -> int:
        """Batches decoded since start (requests that arrived together count once)."""
        return self._scheduler.batches_run

    def adapters(self) -> list[AdapterRef]:
        """The base model (always servable) and every adapter version in memory."""
        return [AdapterRef.base(), *self._slots.loaded()]

    def stats(self) -> EngineStats:
        """Slots, queue and token counters, in the same shape as the llama.cpp engine's."""
        with self._totals_lock:
            t = BatchCounts(**vars(self._totals))
        running = self._scheduler.running()
        return EngineStats(
            slots_total=self.config.max_batch_size,
            slots_busy=running,
            requests_deferred=self._scheduler.depth() - running,
            in_flight=self._scheduler.depth(),
            prompt_tokens_total=t.prompt_tokens,
            generated_tokens_total=t.generated_tokens,
            prompt_seconds_total=t.prompt_seconds,
            generated_seconds_total=t.generate_seconds,
            adapters_loaded=len(self._slots.loaded()),
            server_starts=self._loads,
        )

    def _decode(self, jobs: list[_Job]) -> None:
        """One batch, in the scheduler's worker thread; its costs are added to the totals."""
        counts = decode_batch(self._require_runner(), jobs)
        # A batch's prefills and KV free their memory into glibc's heap, which keeps it (fragmented, not at
        # its top) long after: ~140 MB resident for nothing on a 0.47 B model (bench_replica_bound). A trim
        # gives it back, at most once per interval so its ~15 ms stays well under 1 % of the decode time.
        now = time.monotonic()
        if now - self._trimmed_at >= HEAP_TRIM_INTERVAL_S:
            trim_heap()
            self._trimmed_at = now
        with self._totals_lock:
            for field in ("prompt_tokens", "generated_tokens", "prompt_seconds", "generate_seconds"):
                setattr(self._totals, field, getattr(self._totals, field) + getattr(counts, field))

    # ---- adapters ----

    async def ensure_adapter(self, ref: AdapterRef) -> None:
        """Load ``ref`` from the registry unless loaded; unload the least recently used idle ones past
        ``max_loaded_adapters``. Raises AdapterNotFound, AdapterCorrupt or AdapterIncompatible."""
        if ref in self._slots:
            self._slots.touch(ref)
            return
        runner = self._require_runner()
        async with self._adapter_lock:
            if ref in self._slots:
                return
            path = await fetch_adapter(self.registry, ref, self.config.base_model_id)
            for victim in self._slots.victims():
                name = self._slots.name(victim)
                self._slots.remove(victim)
                await asyncio.to_thread(runner.unload_adapter, name)
                log.info("unloaded adapter %s (least recently used)", victim)
            name = self._slots.add(ref)
            try:
                await asyncio.to_thread(runner.load_adapter, name, path)
            except BaseException:
                self._slots.remove(ref)
                raise
            log.info("loaded adapter %s", ref)

    # ---- generation ----

    async def generate(self, req: GenerationRequest) -> GenerationResult:
        return await collect(self.stream(req), req.adapter)

    async def stream(self, req: GenerationRequest) -> AsyncIterator[StreamChunk]:
        job = await self._admit(req)
        try:
            while True:
                event = await job.events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if event.finish_reason is not None:
                    return
        finally:
            job.cancelled = True  # a client that stops reading frees its batch slot at the next step

    async def _admit(self, req: GenerationRequest) -> _Job:
        if not self.ready():
            raise EngineNotReady("the generator has not started")
        runner = self._require_runner()
        await self.ensure_adapter(req.adapter)
        prompt_ids = render_prompt(runner.tokenizer, req.messages)
        max_new = req.max_tokens or self.config.max_new_tokens
        if len(prompt_ids) + max_new > runner.max_positions:
            raise PromptTooLong(
                f"prompt of {len(prompt_ids)} tokens plus max_tokens {max_new} exceeds the context of "
                f"{runner.max_positions} tokens"
            )
        # No await between the adapter check above and the pin: eviction cannot slip in between.
        job = _Job(asyncio.get_running_loop(), req, self._slots.name(req.adapter), prompt_ids, max_new)
        self._slots.pin(req.adapter)
        try:
            self._scheduler.submit(job)
        except BaseException:
            self._slots.unpin(req.adapter)
            raise
        return job

    def _release(self, jobs: list[_Job]) -> None:
        for job in jobs:
            self._slots.unpin(job.ref)

    def _require_runner(self) -> ModelRunner:
        if self.runner is None:
            raise EngineNotReady("the generator has not started")
        return self.runner
