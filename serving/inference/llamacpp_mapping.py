"""Pure translations between our generator types and llama.cpp's server API (no xllamacpp import).

The engine calls llama.cpp's OpenAI-style ``/v1/completions`` handler in process with the prompt as
token ids (our tokenizer and chat template, as the other engines), and reads its streamed chunks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from finserve.contracts import AdapterRef, StrictModel

from .types import FinishReason, GenerationRequest, Usage


class LlamaCppError(RuntimeError):
    """llama.cpp refused or failed a request (an error payload instead of a completion chunk)."""


def completion_body(
    req: GenerationRequest,
    prompt_ids: Sequence[int],
    max_tokens: int,
    adapters: Sequence[AdapterRef],
) -> dict[str, Any]:
    """The request for llama.cpp's completions handler: streamed, prefix-cached, and with every loaded
    LoRA's scale set (1 for the request's adapter, 0 for the others: llama.cpp applies per request)."""
    body: dict[str, Any] = {
        "prompt": list(prompt_ids),
        "max_tokens": max_tokens,
        "stream": True,
        "cache_prompt": True,
        "temperature": req.temperature,
        # Only temperature and top_p, as the other engines: llama.cpp's own defaults add top_k 40, min_p 0.05.
        "top_p": req.top_p if req.temperature > 0 else 1.0,
        "top_k": 0,
        "min_p": 0.0,
        "lora": [{"id": i, "scale": 1.0 if ref == req.adapter else 0.0} for i, ref in enumerate(adapters)],
    }
    if req.stop:
        body["stop"] = list(req.stop)
    if req.seed is not None:
        body["seed"] = req.seed
    return body


class Chunk(StrictModel):
    """One streamed piece of a llama.cpp completion, in our terms."""

    delta: str = Field("", description="Text since the previous chunk.")
    finish_reason: FinishReason | None = Field(None, description="Set on the last chunk.")
    usage: Usage | None = Field(None, description="Set on the last chunk.")


def parse_chunk(payload: dict[str, Any]) -> Chunk:
    """A streamed chunk, or LlamaCppError for an error payload (``{"error": ...}`` or ``{"code": ...}``)."""
    error = payload.get("error") if isinstance(payload.get("error"), dict) else None
    if error is not None or ("code" in payload and "choices" not in payload):
        detail = error or payload
        raise LlamaCppError(f"llama.cpp: {detail.get('message', detail)}")
    choices = payload.get("choices") or [{}]
    choice = choices[0]
    reason = choice.get("finish_reason")
    finish: FinishReason | None = None
    if reason is not None:
        if reason not in ("stop", "length"):
            raise LlamaCppError(f"llama.cpp finished the request with reason {reason!r}")
        finish = reason
    usage = None
    if finish is not None:
        raw = payload.get("usage") or {}
        cached = (raw.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        usage = Usage(
            prompt_tokens=int(raw.get("prompt_tokens", 0)),
            completion_tokens=int(raw.get("completion_tokens", 0)),
            cached_tokens=int(cached),
        )
    return Chunk(delta=choice.get("text") or "", finish_reason=finish, usage=usage)


def parse_prometheus(text: str) -> dict[str, float]:
    """``name value`` lines of llama.cpp's /metrics text (it has no labels), names without the
    ``llamacpp:`` prefix."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        try:
            values[name.removeprefix("llamacpp:")] = float(value)
        except ValueError:
            continue
    return values


def default_threads() -> int:
    """The CPUs this process may run on (a pod's cpuset or affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
