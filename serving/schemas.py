"""HTTP API schemas: the OpenAI chat-completions subset finserve serves, plus the finserve extension."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from finserve.contracts import StrictModel


class ChatMessageIn(StrictModel):
    role: Literal["system", "user", "assistant"] = Field(description="Who wrote the message.")
    content: str = Field(description="Message text.")
    name: str | None = Field(None, description="Optional participant name (ignored).")


class ChatCompletionRequest(BaseModel):
    """OpenAI's request; unknown OpenAI fields are tolerated (clients send many), ours are checked."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="Client-facing model name, see GET /v1/models.")
    messages: list[ChatMessageIn] = Field(min_length=1, description="The conversation; the last user turn is answered.")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate.")
    max_completion_tokens: int | None = Field(None, ge=1, description="OpenAI's newer name for max_tokens.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 is greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    stop: str | list[str] | None = Field(None, description="Stop sequences.")
    stream: bool = Field(False, description="Stream server-sent events.")
    seed: int | None = Field(None, description="Sampling seed.")
    user: str | None = Field(None, description="End-user id: the sticky key for canary routing.")


class PromptTokensDetails(StrictModel):
    cached_tokens: int = Field(0, description="Prompt tokens reused from the generator's prefix cache.")


class Usage(StrictModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class ChoiceMessage(StrictModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(StrictModel):
    index: int = 0
    message: ChoiceMessage
    finish_reason: str


class FinserveInfo(StrictModel):
    """What finserve adds to every answer. Counts only: never the PII values themselves."""

    request_id: str
    intent: str | None
    intent_confidence: float | None = None
    adapter: str = Field(description="NAME@VERSION that served the request (base@0.0.0 = no adapter).")
    route: str = Field(description="stable, canary or override.")
    citations: list[str] = Field(default_factory=list, description="Ids of the retrieved documents the prompt used.")
    held_back: list[str] = Field(
        default_factory=list,
        description="Ids of retrieved documents kept out of the prompt because the context guard found PII in them.")
    pii: dict[str, dict[str, int]] = Field(default_factory=dict, description="stage -> entity type -> count.")
    cache: str | None = Field(None, description="Where retrieval was answered from: l1, l2, miss, off.")
    timings_ms: dict[str, float] = Field(default_factory=dict, description="Per-stage wall time.")
    degraded: str | None = Field(
        None, description="Set when the model did not answer: fallback (the curated answer of the intent) or "
        "cache (the stored answer of the same question); also the x-finserve-degraded header.")
    provider: str | None = Field(None, description="Generator provider that answered (pools with providers).")


class ChatCompletion(StrictModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage
    finserve: FinserveInfo


class ModelCard(StrictModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "finserve"
    root: str | None = None


class ModelList(StrictModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
