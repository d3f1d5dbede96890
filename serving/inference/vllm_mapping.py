"""Pure translations between our generator types and vLLM's (no vllm import: testable on CPU)."""

from __future__ import annotations

from typing import Any

from finserve.contracts import AdapterRef

from .config import GeneratorConfig
from .types import FinishReason, GenerationRequest


class LoraIds:
    """A positive integer per adapter version, never reused.

    vLLM caches LoRA weights by ``lora_int_id``: giving a new version an id that an old one had
    would serve the old weights, so ids only ever grow.
    """

    def __init__(self) -> None:
        self._ids: dict[AdapterRef, int] = {}
        self._next = 1

    def assign(self, ref: AdapterRef) -> int:
        if ref.is_base:
            raise ValueError("the base model has no LoRA id")
        if ref not in self._ids:
            self._ids[ref] = self._next
            self._next += 1
        return self._ids[ref]

    def get(self, ref: AdapterRef) -> int | None:
        return self._ids.get(ref)

    def refs(self) -> list[AdapterRef]:
        return list(self._ids)


def lora_name(ref: AdapterRef) -> str:
    return str(ref)


def sampling_kwargs(req: GenerationRequest, default_max_tokens: int) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` with the same meaning as the CPU engine."""
    kwargs: dict[str, Any] = {
        "max_tokens": req.max_tokens or default_max_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p if req.temperature > 0 else 1.0,
        "skip_special_tokens": True,
    }
    if req.stop:
        kwargs["stop"] = list(req.stop)
    if req.seed is not None:
        kwargs["seed"] = req.seed
    return kwargs


def finish_reason(reason: str | None) -> FinishReason | None:
    """vLLM says stop / length / abort; an aborted request never reaches a client as finished."""
    if reason is None:
        return None
    if reason == "length":
        return "length"
    if reason == "stop":
        return "stop"
    raise RuntimeError(f"vLLM finished the request with reason {reason!r}")


def engine_kwargs(config: GeneratorConfig, model: str) -> dict[str, Any]:
    """Keyword arguments for ``vllm.AsyncEngineArgs``: LoRA on, sized by the config."""
    opts = config.vllm
    kwargs: dict[str, Any] = {
        "model": model,
        "tokenizer": model,
        "enable_lora": True,
        "max_lora_rank": opts.max_lora_rank,
        "max_loras": opts.max_loras,
        "gpu_memory_utilization": opts.gpu_memory_utilization,
        "tensor_parallel_size": opts.tensor_parallel_size,
        "max_num_seqs": opts.max_num_seqs,
        "enforce_eager": opts.enforce_eager,
        "dtype": opts.dtype,
    }
    if opts.max_cpu_loras is not None:
        kwargs["max_cpu_loras"] = opts.max_cpu_loras
    if opts.max_model_len is not None:
        kwargs["max_model_len"] = opts.max_model_len
    if opts.quantization is not None:
        kwargs["quantization"] = opts.quantization
    return kwargs
