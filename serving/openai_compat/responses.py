"""OpenAI's Responses API (``POST /v1/responses``), answered by the guarded chat pipeline.

The newer OpenAI SDKs and agent frameworks call ``client.responses.create`` rather than chat completions.
A response here is one chat request: ``instructions`` and the ``input`` items become the messages (the same
input guard, retrieval, context guard, system prompt and knowledge, output guard and audit line as chat),
the answer becomes one ``message`` output item of one ``output_text`` part. finserve keeps no state between
requests, so nothing is stored and ``previous_response_id`` / ``conversation`` are refused by name, as are
tools, non-text inputs and formats: a 400 naming the field, never a silently different answer.

Pure mapping, no I/O: the route (routes.py) runs the pipeline.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from ..errors import invalid_field
from ..schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessageIn,
    FinserveInfo,
    OpenAIRequest,
    StreamOptions,
)
from .rules import check_stop, no_tools

# Content part types a message item may hold, by what they carry: text is served, the rest is refused.
_TEXT_PARTS = {"input_text", "output_text", "text", "refusal"}
_ROLES = {"user", "assistant", "system", "developer"}


class ResponsesRequest(OpenAIRequest):
    """OpenAI's Responses request; unknown fields are tolerated, those that change the answer's shape or
    need state finserve does not keep are refused by name (check_responses_request)."""

    model: str = Field(description="Client-facing model name, see GET /v1/models.")
    input: str | list[Any] = Field(
        description="The customer's text, or a list of message items ({role, content}) for a conversation."
    )
    instructions: str | None = Field(None, description="A system message put before the input.")
    max_output_tokens: int | None = Field(None, ge=1, description="Most tokens to generate.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 is greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    stream: bool = Field(False, description="Stream the answer as Responses events.")
    user: str | None = Field(None, description="End-user id: the sticky key for canary routing.")
    safety_identifier: str | None = Field(None, description="OpenAI's newer name for user; read as user.")
    store: bool | None = Field(
        None, description="Nothing is stored whatever this says (the response says false)."
    )
    metadata: dict[str, Any] | None = Field(
        None, description="Accepted, not kept nor echoed (it may hold PII)."
    )
    previous_response_id: str | None = Field(None, description="Refused: no response is stored to continue.")
    conversation: Any = Field(None, description="Refused: no conversation is stored.")
    background: bool | None = Field(None, description="Refused when true: answers are given in the request.")
    tools: list[Any] | None = Field(None, description="Refused when not empty: no tools are served.")
    tool_choice: Any = Field(None, description="Only 'none' or 'auto' (there are no tools).")
    text: dict[str, Any] | None = Field(
        None, description="Only the text format: {'format': {'type': 'text'}}."
    )
    top_logprobs: int | None = Field(None, description="Refused: log probabilities are not returned.")
    include: list[str] | None = Field(None, description="Refused when not empty: nothing extra is returned.")
    stop: str | list[str] | None = Field(None, description="Up to 4 stop sequences (a finserve extension).")

    @model_validator(mode="after")
    def _user_from_safety_identifier(self) -> ResponsesRequest:
        # One end-user id, pseudonymised by the gateway's intake like chat's user.
        if self.user is None and self.safety_identifier is not None:
            self.user = self.safety_identifier
        self.safety_identifier = None
        return self

    @property
    def max_tokens(self) -> int | None:
        """What the rate limiter charges up front (routes.py reads max_tokens)."""
        return self.max_output_tokens


def _message(i: int, item: Any) -> ChatMessageIn:
    where = f"input.{i}"
    if not isinstance(item, dict):
        raise invalid_field(where, "must be a message item ({role, content})")
    kind = item.get("type", "message")
    if kind != "message":
        # The item's type is client input: say what is served rather than echo it.
        raise invalid_field(f"{where}.type", "only message items are served (no tool calls, files or images)")
    role = item.get("role")
    if role not in _ROLES:
        raise invalid_field(f"{where}.role", "must be user, assistant, system or developer")
    content = item.get("content")
    if isinstance(content, str):
        return ChatMessageIn(role=role, content=content)
    if not isinstance(content, list) or not content:
        raise invalid_field(f"{where}.content", "must be a string or a non-empty array of text parts")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS:
            raise invalid_field(
                f"{where}.content.{j}.type", "only text parts are served (no images, audio or files)"
            )
        text = part.get("refusal") if part.get("type") == "refusal" else part.get("text")
        if not isinstance(text, str):
            raise invalid_field(f"{where}.content.{j}.text", "must be a string")
        texts.append(text)
    return ChatMessageIn(role=role, content="\n".join(texts))


def check_responses_request(req: ResponsesRequest, max_messages: int) -> list[ChatMessageIn]:
    """The chat messages the request asks; InvalidRequest naming the first field finserve cannot honour."""
    if req.previous_response_id:
        raise invalid_field(
            "previous_response_id", "not supported: no response is stored; send the conversation in input"
        )
    if req.conversation is not None:
        raise invalid_field("conversation", "not supported: no conversation is stored; send it in input")
    if req.background:
        raise invalid_field("background", "not supported: answers are given in the request")
    if req.tools:
        raise no_tools("tools")
    if req.tool_choice not in (None, "none", "auto"):
        raise no_tools("tool_choice")
    fmt = (req.text or {}).get("format") or {"type": "text"}
    if not isinstance(fmt, dict) or fmt.get("type") != "text":
        raise invalid_field("text.format.type", "only 'text' is served")
    if req.top_logprobs:
        raise invalid_field("top_logprobs", "not supported: log probabilities are not returned")
    if req.include:
        raise invalid_field("include", "not supported: nothing beyond the answer is returned")
    check_stop(req.stop)
    items = [{"role": "user", "content": req.input}] if isinstance(req.input, str) else req.input
    if not items:
        raise invalid_field("input", "must not be empty")
    messages = [_message(i, item) for i, item in enumerate(items)]
    if req.instructions:
        messages.insert(0, ChatMessageIn(role="system", content=req.instructions))
    if len(messages) > max_messages:
        raise invalid_field("input", f"at most {max_messages} messages per request")
    return messages


def to_chat_request(req: ResponsesRequest, messages: list[ChatMessageIn]) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model=req.model,
        messages=messages,
        max_tokens=req.max_output_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=req.stop,
        stream=req.stream,
        # the last chunk's usage fills the completed response's usage
        stream_options=StreamOptions(include_usage=True) if req.stream else None,
        user=req.user,
    )


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"] = "assistant"
    content: list[OutputText]


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: dict[str, int]
    output_tokens: int
    output_tokens_details: dict[str, int]
    total_tokens: int


class Response(BaseModel):
    """OpenAI's response object, with finserve's extension (as chat's ``finserve``)."""

    id: str = Field(description="resp_<request id>.")
    object: Literal["response"] = "response"
    created_at: int = Field(default_factory=lambda: int(time.time()))
    status: Literal["in_progress", "completed", "incomplete"]
    incomplete_details: dict[str, str] | None = None
    error: None = None
    model: str
    output: list[OutputMessage]
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float
    top_p: float
    parallel_tool_calls: bool = False
    tool_choice: Literal["none"] = "none"
    tools: list[Any] = Field(default_factory=list)
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    truncation: Literal["disabled"] = "disabled"
    store: Literal[False] = False
    previous_response_id: None = None
    reasoning: None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    usage: ResponseUsage | None = None
    finserve: FinserveInfo | None = None


def _usage(prompt: int, completion: int, cached: int) -> ResponseUsage:
    return ResponseUsage(
        input_tokens=prompt,
        input_tokens_details={"cached_tokens": cached},
        output_tokens=completion,
        output_tokens_details={"reasoning_tokens": 0},
        total_tokens=prompt + completion,
    )


def _shell(req: ResponsesRequest, request_id: str, status: Status, output: list[OutputMessage]) -> Response:
    return Response(
        id=f"resp_{request_id}",
        status=status,
        model=req.model,
        output=output,
        instructions=req.instructions,
        max_output_tokens=req.max_output_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
    )


Status = Literal["in_progress", "completed", "incomplete"]


def _finished(finish_reason: str | None) -> tuple[Status, dict[str, str] | None]:
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    return "completed", None


def to_response(req: ResponsesRequest, request_id: str, answer: ChatCompletion) -> Response:
    status, details = _finished(answer.choices[0].finish_reason)
    text = OutputText(text=answer.choices[0].message.content)
    out = _shell(
        req, request_id, status, [OutputMessage(id=f"msg_{request_id}", status=status, content=[text])]
    )
    cached = answer.usage.prompt_tokens_details.cached_tokens if answer.usage.prompt_tokens_details else 0
    out.usage = _usage(answer.usage.prompt_tokens, answer.usage.completion_tokens, cached)
    out.incomplete_details = details
    out.finserve = answer.finserve
    return out


class ResponseEvents:
    """The pipeline's chat chunks as the Responses stream: response.created, the output item and its text part
    opened, one output_text.delta per chunk, then their done events and response.completed (or incomplete)
    with usage and the finserve object. Closing it closes the pipeline's stream at once (an abandoned answer
    still gets its audit line)."""

    def __init__(self, inner: AsyncIterator[dict[str, Any]], req: ResponsesRequest, request_id: str) -> None:
        self._inner, self._req, self._rid = inner, req, request_id
        self._pending: list[dict[str, Any]] = []
        self._seq = 0
        self._text: list[str] = []
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._finserve: dict[str, Any] | None = None
        self._started = self._ended = False
        self._item = f"msg_{request_id}"

    def __aiter__(self) -> ResponseEvents:
        return self

    def _emit(self, kind: str, **fields: Any) -> None:
        self._pending.append({"type": kind, "sequence_number": self._seq, **fields})
        self._seq += 1

    def _response(self, status: Status) -> dict[str, Any]:
        output = []
        if status != "in_progress":
            text = OutputText(text="".join(self._text))
            output = [OutputMessage(id=self._item, status=status, content=[text])]
        out = _shell(self._req, self._rid, status, output)
        if self._usage is not None:
            details = self._usage.get("prompt_tokens_details") or {}
            out.usage = _usage(
                self._usage["prompt_tokens"],
                self._usage["completion_tokens"],
                details.get("cached_tokens", 0),
            )
        if self._finserve is not None:
            out.finserve = FinserveInfo.model_validate(self._finserve)
        return out.model_dump(mode="json", exclude_none=False)

    def _start(self) -> None:
        self._started = True
        self._emit("response.created", response=self._response("in_progress"))
        self._emit("response.in_progress", response=self._response("in_progress"))
        item = {
            "type": "message",
            "id": self._item,
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        self._emit("response.output_item.added", output_index=0, item=item)
        part = {"type": "output_text", "text": "", "annotations": []}
        self._emit(
            "response.content_part.added", item_id=self._item, output_index=0, content_index=0, part=part
        )

    def _end(self) -> None:
        self._ended = True
        status, details = _finished(self._finish)
        text = "".join(self._text)
        where = {"item_id": self._item, "output_index": 0, "content_index": 0}
        self._emit("response.output_text.done", **where, text=text)
        part = {"type": "output_text", "text": text, "annotations": []}
        self._emit("response.content_part.done", **where, part=part)
        item = {"type": "message", "id": self._item, "status": status, "role": "assistant", "content": [part]}
        self._emit("response.output_item.done", output_index=0, item=item)
        final = self._response(status)
        final["incomplete_details"] = details
        self._emit("response.completed" if status == "completed" else "response.incomplete", response=final)

    async def __anext__(self) -> dict[str, Any]:
        while not self._pending:
            if self._ended:
                raise StopAsyncIteration
            if not self._started:
                self._start()
                continue
            try:
                chunk = await self._inner.__anext__()
            except StopAsyncIteration:
                self._end()
                continue
            self._read(chunk)
        return self._pending.pop(0)

    def _read(self, chunk: dict[str, Any]) -> None:
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        if chunk.get("finserve"):
            self._finserve = chunk["finserve"]
        for choice in chunk.get("choices", []):
            delta = choice.get("delta", {}).get("content")
            if delta:
                self._text.append(delta)
                self._emit(
                    "response.output_text.delta",
                    item_id=self._item,
                    output_index=0,
                    content_index=0,
                    delta=delta,
                )
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]

    async def aclose(self) -> None:
        await self._inner.aclose()  # type: ignore[attr-defined]
