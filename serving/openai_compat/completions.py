"""OpenAI's legacy /v1/completions, answered by the guarded chat pipeline.

A completion here is not a raw continuation of the prompt: each prompt is asked as one user message
through the same pipeline as chat (input guard, retrieval, context guard, the system prompt and
knowledge, output guard, audit). A raw-text completion without the bank's prompt would be another
product, and one the guard and the rollout's answer evaluation never judged. Each prompt of a list is
its own request with its own audit line (request ids ``<id>-0``, ``<id>-1``, ...), as in OIP v2.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import Field, field_validator

from finserve.contracts import StrictModel

from ..errors import InvalidRequest
from ..schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessageIn,
    FinserveInfo,
    OpenAIRequest,
    StreamOptions,
    Usage,
)
from .rules import check_sampling


class CompletionRequest(OpenAIRequest):
    """OpenAI's completions request; unknown OpenAI fields are tolerated, those that change the answer's
    shape are refused by name (see check_completion_request)."""

    model: str = Field(description="Client-facing model name, see GET /v1/models.")
    prompt: str | list[str] = Field(
        description="One prompt or a list of them; each is asked as a user message."
    )
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate per prompt.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 is greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    stop: str | list[str] | None = Field(None, description="Up to 4 stop sequences.")
    stream: bool = Field(False, description="Stream server-sent events (one prompt only).")
    stream_options: StreamOptions | None = Field(None, description="With stream: include_usage.")
    seed: int | None = Field(None, description="Sampling seed (temperature 0 is deterministic anyway).")
    user: str | None = Field(None, description="End-user id: the sticky key for canary routing.")
    n: int | None = Field(None, description="Choices per prompt: only 1.")
    best_of: int | None = Field(None, description="Only 1.")
    logprobs: int | None = Field(None, description="Refused: log probabilities are not returned.")
    echo: bool | None = Field(None, description="Refused when true: the prompt is not echoed.")
    suffix: str | None = Field(None, description="Refused: no insertion mode.")

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, value: object) -> object:
        if isinstance(value, str) or (
            isinstance(value, list) and value and all(isinstance(p, str) for p in value)
        ):
            return value
        raise ValueError("must be a string or a non-empty array of strings (token arrays are not served)")


def check_completion_request(req: CompletionRequest, max_prompts: int) -> list[str]:
    """The prompts to ask; InvalidRequest naming the first field finserve cannot honour."""
    check_sampling(n=req.n, logprobs=req.logprobs, stop=req.stop)
    if req.best_of not in (None, 1):
        raise InvalidRequest("best_of: only 1 is served", param="best_of")
    if req.echo:
        raise InvalidRequest("echo: not supported: the prompt is not echoed", param="echo")
    if req.suffix:
        raise InvalidRequest("suffix: not supported: there is no insertion mode", param="suffix")
    if req.stream_options is not None and not req.stream:
        raise InvalidRequest("stream_options: only allowed when stream is true", param="stream_options")
    prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
    if len(prompts) > max_prompts:
        raise InvalidRequest(f"prompt: at most {max_prompts} prompts per request", param="prompt")
    if req.stream and len(prompts) > 1:
        raise InvalidRequest("prompt: a streamed completion takes one prompt", param="prompt")
    return prompts


def to_chat_request(req: CompletionRequest, prompt: str) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model=req.model,
        messages=[ChatMessageIn(role="user", content=prompt)],
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=req.stop,
        stream=req.stream,
        stream_options=req.stream_options,
        seed=req.seed,
        user=req.user,
    )


class CompletionChoice(StrictModel):
    index: int = Field(description="Position of the prompt this answers.")
    text: str = Field(description="The guarded answer.")
    logprobs: None = Field(None, description="Always null: log probabilities are not returned.")
    finish_reason: Literal["stop", "length"] = Field(
        description="stop: the answer ended; length: max_tokens."
    )
    finserve: FinserveInfo = Field(description="What finserve adds to this prompt's answer.")


class Completion(StrictModel):
    id: str = Field(description="cmpl-<request id>.")
    object: Literal["text_completion"] = Field("text_completion", description="OpenAI's object type.")
    created: int = Field(default_factory=lambda: int(time.time()), description="Unix time of the answer.")
    model: str = Field(description="The model asked.")
    choices: list[CompletionChoice] = Field(description="One per prompt, in prompt order.")
    usage: Usage = Field(description="Token counts summed over the prompts.")


def to_completion(request_id: str, model: str, answers: list[ChatCompletion]) -> Completion:
    prompt = sum(a.usage.prompt_tokens for a in answers)
    completion = sum(a.usage.completion_tokens for a in answers)
    return Completion(
        id=f"cmpl-{request_id}",
        model=model,
        choices=[
            CompletionChoice(
                index=i,
                text=a.choices[0].message.content,
                finish_reason=a.choices[0].finish_reason,  # type: ignore[arg-type]
                finserve=a.finserve,
            )
            for i, a in enumerate(answers)
        ],
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
    )


def to_completion_chunk(chunk: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion.chunk as OpenAI's text_completion chunk (same id suffix, finserve object kept)."""
    out: dict[str, Any] = {
        "id": "cmpl-" + str(chunk["id"]).removeprefix("chatcmpl-"),
        "object": "text_completion",
        "created": chunk["created"],
        "model": chunk["model"],
        "choices": [
            {
                "index": c["index"],
                "text": c["delta"].get("content", ""),
                "logprobs": None,
                "finish_reason": c["finish_reason"],
            }
            for c in chunk["choices"]
        ],
    }
    for key in ("usage", "finserve"):
        if key in chunk:
            out[key] = chunk[key]
    return out


class MappedStream:
    """The pipeline's stream with each chunk mapped. Closing it closes the pipeline's stream at once,
    so a client that leaves still gets its audit line (the pipeline's stream is already started)."""

    def __init__(self, inner: AsyncIterator[dict[str, Any]], fn: Any) -> None:
        self._inner = inner
        self._fn = fn

    def __aiter__(self) -> MappedStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return self._fn(await self._inner.__anext__())

    async def aclose(self) -> None:
        await self._inner.aclose()  # type: ignore[attr-defined]
