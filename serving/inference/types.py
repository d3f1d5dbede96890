"""What the generator takes and returns, free of any transport or engine."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from finserve.contracts import AdapterRef, StrictModel

FinishReason = Literal["stop", "length"]


class ChatMessage(StrictModel):
    """One turn of a conversation."""

    role: Literal["system", "user", "assistant"] = Field(description="Who speaks.")
    content: str = Field(description="What they say (already guarded).")


class GenerationRequest(StrictModel):
    """One completion, with the adapter that must produce it."""

    messages: list[ChatMessage] = Field(
        min_length=1, description="The conversation, chat template applied by the engine."
    )
    adapter: AdapterRef = Field(
        default_factory=AdapterRef.base, description="Adapter version; base@0.0.0 = none."
    )
    max_tokens: int | None = Field(
        None, ge=1, description="Completion token cap; None: the engine's max_new_tokens."
    )
    temperature: float = Field(0.0, ge=0, le=2, description="0 means greedy decoding.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (ignored when greedy).")
    stop: list[str] | None = Field(
        None, max_length=8, description="Strings that end the completion (not included)."
    )
    seed: int | None = Field(None, description="Sampling seed, for reproducible sampled output.")


class Usage(StrictModel):
    """Token counts of one completion."""

    prompt_tokens: int = Field(ge=0, description="Tokens in the templated prompt.")
    completion_tokens: int = Field(
        ge=0, description="Tokens generated (including a stop token the text hides)."
    )
    cached_tokens: int = Field(
        0, ge=0, description="Prompt tokens whose keys and values came from the prefix cache."
    )


class GenerationResult(StrictModel):
    """A finished completion."""

    text: str = Field(description="Completion text, stop sequence excluded.")
    prompt_tokens: int = Field(ge=0, description="Tokens in the templated prompt.")
    completion_tokens: int = Field(ge=0, description="Tokens generated.")
    cached_prompt_tokens: int = Field(0, ge=0, description="Prompt tokens reused from the prefix cache.")
    finish_reason: FinishReason = Field(
        description="stop: end token or stop string; length: max_tokens reached."
    )
    adapter: AdapterRef = Field(description="The adapter version that produced the text.")
    provider: str | None = Field(
        None, description="Provider of a failover pool that generated it; None: one engine."
    )
    first_token_s: float | None = Field(
        None,
        ge=0,
        description="Seconds from the engine taking the request to "
        "its first generated text (queueing and prefill); None if not measured.",
    )
    last_token_s: float | None = Field(
        None,
        ge=0,
        description="Seconds from the engine taking the request to "
        "its last generated text; None if not measured.",
    )


class StreamChunk(StrictModel):
    """A piece of a streamed completion; the last one carries finish_reason and usage."""

    delta: str = Field("", description="Text since the previous chunk.")
    finish_reason: FinishReason | None = Field(None, description="Set on the final chunk only.")
    usage: Usage | None = Field(None, description="Set on the final chunk only.")
    provider: str | None = Field(
        None, description="Provider of a failover pool generating the stream (first chunk)."
    )


class EngineStats(StrictModel):
    """A snapshot of an engine for Prometheus (counters accumulate across llama.cpp server restarts)."""

    slots_total: int = Field(ge=0, description="Parallel slots (sequences decoded together).")
    slots_busy: int = Field(ge=0, description="Slots running a request now.")
    requests_deferred: int = Field(ge=0, description="Requests held until a slot frees.")
    in_flight: int = Field(ge=0, description="Requests admitted by this engine and not finished.")
    prompt_tokens_total: float = Field(
        ge=0, description="Prompt tokens computed at prefill (cache hits excluded)."
    )
    generated_tokens_total: float = Field(ge=0, description="Tokens generated.")
    prompt_seconds_total: float = Field(ge=0, description="Seconds spent in prefill.")
    generated_seconds_total: float = Field(ge=0, description="Seconds spent generating (summed over slots).")
    adapters_loaded: int = Field(ge=0, description="LoRA adapters the current server holds.")
    server_starts: int = Field(
        ge=0,
        description="llama.cpp servers started (one more per adapter set change); the CPU engine: model loads.",
    )
