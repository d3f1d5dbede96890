"""HTTP API schemas: the OpenAI chat-completions subset finserve serves, plus the finserve extension."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from finserve.contracts import StrictModel


class ContentPart(BaseModel):
    """One part of an OpenAI content array. Lenient on purpose: serving/openai_compat/rules.py checks
    each part and names the one it refuses (``messages.0.content.1.type``), which a typed union cannot."""

    model_config = ConfigDict(extra="allow")

    type: Any = Field(None, description="Part type; only 'text' is served.")
    text: Any = Field(None, description="The text of a 'text' part.")


class ChatMessageIn(StrictModel):
    # tool / function are accepted here only so that the check can refuse them by name (no tools are served).
    role: Literal["system", "developer", "user", "assistant", "tool", "function"] = Field(
        description="Who wrote the message; developer is OpenAI's newer name for system."
    )
    content: str | list[ContentPart] | None = Field(
        description="Message text, or OpenAI's array of content parts (text parts only)."
    )
    name: str | None = Field(None, description="Optional participant name (ignored).")
    tool_calls: list[Any] | None = Field(None, description="Refused: finserve serves no tools.")
    tool_call_id: str | None = Field(None, description="Refused: finserve serves no tools.")
    function_call: Any = Field(None, description="Refused: finserve serves no tools.")
    refusal: str | None = Field(None, description="An earlier assistant refusal (ignored).")

    @field_validator("content", mode="before")
    @classmethod
    def _content_shape(cls, value: object) -> object:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(p, dict) for p in value):
            return value
        raise ValueError('must be a string or an array of content parts ({"type": "text", "text": ...})')

    @property
    def text(self) -> str:
        """The message as one string: the text parts of an array joined by newlines (the gateway has
        refused any other part before this is read)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if p.type == "text" and isinstance(p.text, str))

    @property
    def prompt_role(self) -> Literal["system", "user", "assistant"]:
        """The role the prompt builder knows: developer instructions are system instructions."""
        if self.role in ("system", "developer"):
            return "system"
        return "assistant" if self.role == "assistant" else "user"


class StreamOptions(StrictModel):
    include_usage: bool = Field(
        False, description="Send a last chunk with usage and no choices (OpenAI's way)."
    )


class OpenAIRequest(BaseModel):
    """Base of the OpenAI requests: unknown fields are tolerated (clients send many), and ``null`` in an
    optional field means "not given", as in OpenAI's API: clients that serialise typed request objects send
    ``"temperature": null`` for what their user left unset. A required field sent as null is still refused."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            key: value
            for key, value in data.items()
            if value is not None or key not in fields or fields[key].is_required()
        }


class ChatCompletionRequest(OpenAIRequest):
    """OpenAI's request; unknown OpenAI fields are tolerated (clients send many), ours are checked.

    Fields finserve cannot honour (tools, logprobs, n > 1, JSON response formats) are typed here so that
    serving/openai_compat/rules.py refuses them with a 400 naming them instead of ignoring them.
    """

    model: str = Field(description="Client-facing model name, see GET /v1/models.")
    messages: list[ChatMessageIn] = Field(
        min_length=1, description="The conversation; the last user turn is answered."
    )
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate.")
    max_completion_tokens: int | None = Field(
        None, ge=1, description="OpenAI's newer name for max_tokens (wins)."
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 is greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    stop: str | list[str] | None = Field(
        None, description="Up to 4 stop sequences (not included in the answer)."
    )
    stream: bool = Field(False, description="Stream server-sent events.")
    stream_options: StreamOptions | None = Field(None, description="With stream: include_usage.")
    seed: int | None = Field(
        None, description="Sampling seed (temperature 0 is greedy and deterministic anyway)."
    )
    user: str | None = Field(None, description="End-user id: the sticky key for canary routing.")
    n: int | None = Field(None, description="Choices per request: only 1.")
    logprobs: bool | None = Field(None, description="Refused when true: log probabilities are not returned.")
    top_logprobs: int | None = Field(None, description="Refused: log probabilities are not returned.")
    tools: list[Any] | None = Field(None, description="Refused when not empty: no tools are served.")
    tool_choice: Any = Field(None, description="Only 'none' (or absent).")
    functions: list[Any] | None = Field(None, description="Refused when not empty (OpenAI's older tools).")
    function_call: Any = Field(None, description="Only 'none' (or absent).")
    response_format: dict[str, Any] | None = Field(None, description="Only {'type': 'text'}.")


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
    citations: list[str] = Field(
        default_factory=list, description="Ids of the retrieved documents the prompt used."
    )
    held_back: list[str] = Field(
        default_factory=list,
        description="Ids of retrieved documents kept out of the prompt because the context guard found PII in them.",
    )
    pii: dict[str, dict[str, int]] = Field(default_factory=dict, description="stage -> entity type -> count.")
    cache: str | None = Field(None, description="Where retrieval was answered from: l1, l2, miss, off.")
    timings_ms: dict[str, float] = Field(default_factory=dict, description="Per-stage wall time.")
    degraded: str | None = Field(
        None,
        description="Set when the model did not answer: fallback (the curated answer of the intent) or "
        "cache (the stored answer of the same question); also the x-finserve-degraded header.",
    )
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
