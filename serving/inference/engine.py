"""The engine interface every generator backend implements, and the builder that picks one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from finserve.contracts import AdapterRef

from .config import GeneratorConfig
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


def build_engine(config: GeneratorConfig) -> Engine:
    """The engine the config names. Nothing heavy is imported or loaded until ``start()``."""
    if config.engine == "vllm":
        from .vllm_engine import VLLMEngine  # vllm itself is imported in start(), on GPU machines only

        return VLLMEngine(config)
    from .transformers_engine import TransformersEngine

    return TransformersEngine(config)
