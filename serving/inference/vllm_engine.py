"""The GPU engine: vLLM's AsyncLLM with LoRA enabled, one LoRARequest per adapter version.

vLLM batches continuously and swaps LoRA weights on the GPU itself (``max_loras`` resident,
``max_cpu_loras`` cached); this class resolves and verifies adapters through our registry, maps
requests onto vLLM's types and streams deltas back. ``vllm`` is imported in ``start()`` only.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

from finserve.contracts import AdapterRef, AdapterRegistry
from finserve.serving.paths import registry_root

from .adapter_files import adapter_folder, fetch_adapter
from .base_model import ensure_base_model
from .chat import render_prompt
from .config import GeneratorConfig
from .engine import collect
from .errors import EngineNotReady
from .types import GenerationRequest, GenerationResult, StreamChunk, Usage
from .vllm_mapping import LoraIds, engine_kwargs, finish_reason, lora_name, sampling_kwargs


class VLLMEngine:
    """Implements :class:`~finserve.serving.inference.engine.Engine` on vLLM."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self.registry = AdapterRegistry(registry_root(config.registry))
        self._ids = LoraIds()
        self._requests: dict[AdapterRef, Any] = {}  # ref -> vllm LoRARequest
        self._engine: Any = None
        self._tokenizer: Any = None
        self._in_flight = 0
        self._adapter_lock = asyncio.Lock()

    async def start(self) -> None:
        if self._engine is not None:
            return
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        model = self.config.model_dir or str(await asyncio.to_thread(ensure_base_model))
        self._tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, model)
        self._engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_kwargs(self.config, model)))
        for ref in self.config.preload_refs():
            await self.ensure_adapter(ref)

    async def stop(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None

    def ready(self) -> bool:
        return self._engine is not None

    def queue_depth(self) -> int:
        return self._in_flight

    def adapters(self) -> list[AdapterRef]:
        return [AdapterRef.base(), *self._requests]

    async def ensure_adapter(self, ref: AdapterRef) -> None:
        if ref.is_base or ref in self._requests:
            return
        engine = self._require_engine()
        from vllm.lora.request import LoRARequest

        async with self._adapter_lock:
            if ref in self._requests:
                return
            path = await fetch_adapter(self.registry, ref, self.config.base_model_id)
            request = LoRARequest(lora_name(ref), self._ids.assign(ref), str(adapter_folder(path)))
            await engine.add_lora(request)  # loads now, so a bad adapter fails here, not mid-request
            self._requests[ref] = request

    async def generate(self, req: GenerationRequest) -> GenerationResult:
        return await collect(self.stream(req), req.adapter)

    async def stream(self, req: GenerationRequest) -> AsyncIterator[StreamChunk]:
        engine = self._require_engine()
        from vllm import SamplingParams, TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        await self.ensure_adapter(req.adapter)
        prompt_ids = render_prompt(self._tokenizer, req.messages)
        params = SamplingParams(
            **sampling_kwargs(req, self.config.max_new_tokens), output_kind=RequestOutputKind.DELTA
        )
        lora = None if req.adapter.is_base else self._requests[req.adapter]
        completion = 0
        self._in_flight += 1
        try:
            async for out in engine.generate(
                TokensPrompt(prompt_token_ids=prompt_ids), params, uuid.uuid4().hex, lora_request=lora
            ):
                piece = out.outputs[0]
                completion += len(piece.token_ids)
                reason = finish_reason(piece.finish_reason) if out.finished else None
                usage = None
                if reason:  # vLLM's automatic prefix caching reports its hits per request
                    usage = Usage(
                        prompt_tokens=len(prompt_ids),
                        completion_tokens=completion,
                        cached_tokens=getattr(out, "num_cached_tokens", None) or 0,
                    )
                if piece.text or reason:
                    yield StreamChunk(delta=piece.text, finish_reason=reason, usage=usage)
        finally:
            self._in_flight -= 1

    def _require_engine(self) -> Any:
        if self._engine is None:
            raise EngineNotReady("the vLLM engine has not started")
        return self._engine
