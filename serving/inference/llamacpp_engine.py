"""The llama.cpp CPU engine: llama.cpp's own server (xllamacpp, a prebuilt wheel: nothing is compiled
here) in this process, over a GGUF base model with GGUF LoRA adapters.

llama.cpp batches continuously over ``max_batch_size`` parallel slots, reuses each slot's prompt prefix
(``cache_prompt``) and applies LoRA scales per request. It loads adapters only when its server starts,
so a version not yet loaded starts a new server with the extended set (about a second for SmolLM2):
new requests go to it while the old one finishes its own and is then freed. Requests whose LoRA sets
differ are not decoded in the same llama.cpp batch.

xllamacpp's handler blocks until a completion ends, calling back once per chunk: each request runs
on a worker thread and hands its chunks to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from finserve.contracts import AdapterRef, AdapterRegistry
from finserve.serving.paths import registry_root

from .adapter_files import fetch_adapter
from .base_model import tokenizer_dir
from .chat import render_prompt
from .chat_tokenizer import ChatTokenizer
from .config import GeneratorConfig
from .engine import collect
from .errors import AdapterIncompatible, EngineNotReady, EngineOverloaded, PromptTooLong
from .llamacpp_files import adapter_cache_dir, adapter_gguf, base_gguf, default_converted_model
from .llamacpp_mapping import LlamaCppError, completion_body, default_threads, parse_chunk, parse_prometheus
from .lora_gguf import BaseShape, LoraConversionError, base_shape
from .types import EngineStats, GenerationRequest, GenerationResult, StreamChunk

log = logging.getLogger(__name__)

_DONE = object()  # a worker thread's last word: the handler returned


class _Server:
    """One llama.cpp server and the adapters it started with (a request's LoRA ids are their positions)."""

    def __init__(self, handle: Any, adapters: tuple[AdapterRef, ...]) -> None:
        self.handle = handle
        self.adapters = adapters
        self.in_flight = 0
        self.retired = False

    def metrics(self) -> dict[str, float]:
        return parse_prometheus(self.handle.handle_metrics())


class _Totals:
    """Counters of servers already freed, so the engine's stay monotonic across restarts."""

    KEYS = (
        "prompt_tokens_total",
        "tokens_predicted_total",
        "prompt_seconds_total",
        "tokens_predicted_seconds_total",
    )

    def __init__(self) -> None:
        self.values = dict.fromkeys(self.KEYS, 0.0)

    def add(self, metrics: dict[str, float]) -> None:
        for key in self.KEYS:
            self.values[key] += metrics.get(key, 0.0)


class LlamaCppEngine:
    """Implements :class:`~finserve.serving.inference.engine.Engine` on llama.cpp (CPU)."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self.options = config.llamacpp
        self.registry = AdapterRegistry(registry_root(config.registry))
        self._server: _Server | None = None
        self._tokenizer: Any = None
        self._gguf: Path | None = None
        self._shape: BaseShape | None = None
        self._lora_files: OrderedDict[AdapterRef, Path] = OrderedDict()  # least recently used first
        self._adapter_lock = asyncio.Lock()
        self._in_flight = 0
        self._starts = 0
        self._totals = _Totals()
        self._stats_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None  # request threads (made in start, ended in stop)

    # ---- lifecycle ----

    async def start(self) -> None:
        if self._server is not None:
            return
        self._gguf = base_gguf(self.options)
        self._shape = await asyncio.to_thread(base_shape, self._gguf)
        converted = Path(self.config.model_dir) if self.config.model_dir else default_converted_model()
        folder = await asyncio.to_thread(tokenizer_dir, self._gguf, converted)
        self._tokenizer = await asyncio.to_thread(ChatTokenizer.from_folder, folder)
        self._pool = ThreadPoolExecutor(
            max_workers=max(4, 2 * self.config.max_batch_size), thread_name_prefix="llamacpp"
        )
        self._server = await self._launch(OrderedDict())
        for ref in self.config.preload_refs():
            await self.ensure_adapter(ref)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(self._free, server)
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)  # running requests finish on their threads; nothing new is taken

    def ready(self) -> bool:
        return self._server is not None

    def queue_depth(self) -> int:
        return self._in_flight

    def adapters(self) -> list[AdapterRef]:
        return [AdapterRef.base(), *(self._server.adapters if self._server else ())]

    def stats(self) -> EngineStats:
        server = self._server
        metrics = server.metrics() if server is not None else {}
        with self._stats_lock:
            done = dict(self._totals.values)
        return EngineStats(
            slots_total=self.config.max_batch_size if server else 0,
            slots_busy=int(metrics.get("requests_processing", 0)),
            requests_deferred=int(metrics.get("requests_deferred", 0)),
            in_flight=self._in_flight,
            prompt_tokens_total=done["prompt_tokens_total"] + metrics.get("prompt_tokens_total", 0.0),
            generated_tokens_total=done["tokens_predicted_total"]
            + metrics.get("tokens_predicted_total", 0.0),
            prompt_seconds_total=done["prompt_seconds_total"] + metrics.get("prompt_seconds_total", 0.0),
            generated_seconds_total=(
                done["tokens_predicted_seconds_total"] + metrics.get("tokens_predicted_seconds_total", 0.0)
            ),
            adapters_loaded=len(server.adapters) if server else 0,
            server_starts=self._starts,
        )

    # ---- adapters ----

    async def ensure_adapter(self, ref: AdapterRef) -> None:
        """Load ``ref`` unless the current server holds it: verify and fetch it from the registry, find or
        make its GGUF LoRA, and start a server with it (and the most recently used others, up to
        ``max_loaded_adapters``). Raises AdapterNotFound, AdapterCorrupt or AdapterIncompatible."""
        if ref.is_base:
            return
        server = self._require_server()
        if ref in server.adapters:
            self._lora_files.move_to_end(ref)
            return
        async with self._adapter_lock:
            server = self._require_server()
            if ref in server.adapters:
                return
            path = await fetch_adapter(self.registry, ref, self.config.base_model_id)
            manifest = self.registry.manifest(ref)
            assert self._shape is not None
            try:
                lora = await asyncio.to_thread(
                    adapter_gguf, manifest, path, self._shape, adapter_cache_dir(self.options)
                )
            except LoraConversionError as exc:
                raise AdapterIncompatible(
                    f"adapter {ref} has no GGUF LoRA form for llama.cpp: {exc}"
                ) from exc
            files = OrderedDict((r, self._lora_files[r]) for r in self._lora_files if r in server.adapters)
            files[ref] = lora
            while len(files) > self.config.max_loaded_adapters:
                victim, _ = files.popitem(last=False)
                log.info("adapter %s leaves the llama.cpp server (least recently used)", victim)
            fresh = await self._launch(files)  # a file llama.cpp refuses leaves the running server as it was
            self._lora_files = files
            old, self._server = self._server, fresh
            if old is not None:
                self._retire(old)
            log.info("llama.cpp server now holds adapters %s", ", ".join(map(str, fresh.adapters)))

    async def _launch(self, adapters: OrderedDict[AdapterRef, Path]) -> _Server:
        handlers = _signal_handlers()  # read here, on the loop's thread: in a CLI or uvicorn, the main one
        try:
            return await asyncio.to_thread(self._start_server, adapters)
        finally:
            _restore_signal_handlers(handlers)

    def _start_server(self, adapters: OrderedDict[AdapterRef, Path]) -> _Server:
        import xllamacpp

        assert self._gguf is not None
        opts = self.options
        params = xllamacpp.CommonParams()
        params.model.path = str(self._gguf)
        params.n_parallel = self.config.max_batch_size
        params.n_ctx = opts.context_per_slot * self.config.max_batch_size
        threads = opts.threads or default_threads()
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.cache_ram_mib = opts.prompt_cache_mb
        params.endpoint_metrics = True
        params.verbosity = -1
        params.warmup = False
        # Its HTTP listener (it always starts one) stays on loopback, on a port the kernel picks.
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.lora_init_without_apply = True  # every LoRA at scale 0 unless a request names it
        params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(path), 0.0) for path in adapters.values()]
        handle = xllamacpp.Server(params)
        self._starts += 1
        return _Server(handle, tuple(adapters))

    def _retire(self, server: _Server) -> None:
        server.retired = True
        if server.in_flight == 0:
            self._free_later(server)

    def _free_later(self, server: _Server) -> None:
        """Free off the event loop: llama.cpp joins its loop thread."""
        threading.Thread(target=self._free, args=(server,), name="llamacpp-free", daemon=True).start()

    def _free(self, server: _Server) -> None:
        try:
            metrics = server.metrics()
        except Exception:  # a server that failed mid-way still gets freed
            metrics = {}
        with self._stats_lock:
            self._totals.add(metrics)
        server.handle = None  # the last reference: llama.cpp stops its loop and frees the model

    # ---- generation ----

    async def generate(self, req: GenerationRequest) -> GenerationResult:
        return await collect(self.stream(req), req.adapter)

    async def stream(self, req: GenerationRequest) -> AsyncIterator[StreamChunk]:
        await self.ensure_adapter(req.adapter)
        server = self._require_server()
        if not req.adapter.is_base and req.adapter not in server.adapters:
            # Another request's adapter replaced the server (and evicted ours) while we waited: load again.
            await self.ensure_adapter(req.adapter)
            server = self._require_server()
        prompt_ids = render_prompt(self._tokenizer, req.messages)
        max_new = req.max_tokens or self.config.max_new_tokens
        if len(prompt_ids) + max_new > self.options.context_per_slot:
            raise PromptTooLong(
                f"prompt of {len(prompt_ids)} tokens plus max_tokens {max_new} exceeds the context of "
                f"{self.options.context_per_slot} tokens per slot"
            )
        if self._in_flight >= self.config.max_queue:
            raise EngineOverloaded(
                f"{self._in_flight} requests in flight (max_queue {self.config.max_queue})"
            )
        body = completion_body(req, prompt_ids, max_new, server.adapters)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def on_chunk(payload: dict[str, Any]) -> bool:
            loop.call_soon_threadsafe(events.put_nowait, payload)
            return cancelled.is_set()  # True: stop reading, llama.cpp cancels the task and frees the slot

        def run() -> None:
            try:
                server.handle.handle_completions(body, on_chunk)
            except BaseException as exc:  # noqa: BLE001 - handed to the request's reader
                loop.call_soon_threadsafe(events.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(events.put_nowait, _DONE)

        self._in_flight += 1
        server.in_flight += 1
        try:
            self._require_pool().submit(run)
            while True:
                event = await events.get()
                if event is _DONE:
                    raise LlamaCppError("llama.cpp ended the stream without a finish reason")
                if isinstance(event, BaseException):
                    raise event
                chunk = parse_chunk(event)
                if chunk.delta or chunk.finish_reason:
                    yield StreamChunk(delta=chunk.delta, finish_reason=chunk.finish_reason, usage=chunk.usage)
                if chunk.finish_reason is not None:
                    return
        finally:
            cancelled.set()
            self._in_flight -= 1
            server.in_flight -= 1
            if server.retired and server.in_flight == 0:
                self._free_later(server)

    def _require_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            raise EngineNotReady("the llama.cpp engine has not started")
        return self._pool

    def _require_server(self) -> _Server:
        if self._server is None:
            raise EngineNotReady("the llama.cpp engine has not started")
        return self._server


def _signal_handlers() -> dict[int, Any] | None:
    """Python's SIGINT/SIGTERM handlers, when this is the main thread (only it may set them)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(handlers: dict[int, Any] | None) -> None:
    """llama.cpp's server installs its own SIGINT/SIGTERM handlers (which stop its loop); the process's
    owner (uvicorn, Ray, our CLI) keeps deciding what a signal means."""
    if handlers is None:
        return
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)
