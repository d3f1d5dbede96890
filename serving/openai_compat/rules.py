"""What of OpenAI's chat request finserve honours, and a 400 naming the field for what it does not.

Clients send many OpenAI fields; silently ignoring one that changes the answer's shape (tools, n,
logprobs, a JSON response format) would hand them something they did not ask for, so those are
refused by name. Pure checks over the validated request: no I/O.
"""

from __future__ import annotations

from ..errors import InvalidRequest, invalid_field
from ..schemas import ChatCompletionRequest, ChatMessageIn

MAX_STOP = 4  # OpenAI's own limit


def no_tools(field: str) -> InvalidRequest:
    return invalid_field(field, "not supported: finserve serves no tools or function calling")


def check_message(i: int, m: ChatMessageIn) -> None:
    where = f"messages.{i}"
    if m.role in ("tool", "function"):
        raise no_tools(f"{where}.role")
    for field in ("tool_calls", "tool_call_id", "function_call"):
        if getattr(m, field):
            raise no_tools(f"{where}.{field}")
    if m.content is None:
        raise InvalidRequest(f"{where}.content: must not be null", param=f"{where}.content")
    if isinstance(m.content, str):
        return
    for j, part in enumerate(m.content):
        if part.type != "text":
            # The part's type is client input: say what is served rather than echo it.
            raise InvalidRequest(
                f"{where}.content.{j}.type: only 'text' content parts are served (no images, audio or files)",
                param=f"{where}.content.{j}.type",
            )
        if not isinstance(part.text, str):
            raise InvalidRequest(
                f"{where}.content.{j}.text: must be a string", param=f"{where}.content.{j}.text"
            )


def check_stop(stop: str | list[str] | None) -> None:
    if stop is None:
        return
    items = [stop] if isinstance(stop, str) else stop
    if len(items) > MAX_STOP:
        raise InvalidRequest(f"stop: at most {MAX_STOP} sequences", param="stop")
    if any(not s for s in items):
        raise InvalidRequest("stop: sequences must not be empty", param="stop")


def check_sampling(*, n: int | None, logprobs: object, stop: str | list[str] | None) -> None:
    """The checks chat and completions share."""
    if n is not None and n != 1:
        raise InvalidRequest("n: only 1 choice per request is served", param="n")
    if logprobs:
        raise InvalidRequest("logprobs: not supported: log probabilities are not returned", param="logprobs")
    check_stop(stop)


def check_chat_request(req: ChatCompletionRequest) -> None:
    """Raises InvalidRequest naming the first field finserve cannot honour."""
    for i, m in enumerate(req.messages):
        check_message(i, m)
    check_sampling(n=req.n, logprobs=req.logprobs, stop=req.stop)
    if req.top_logprobs is not None:
        raise InvalidRequest(
            "top_logprobs: not supported: log probabilities are not returned", param="top_logprobs"
        )
    if req.tools:
        raise no_tools("tools")
    if req.functions:
        raise no_tools("functions")
    for field in ("tool_choice", "function_call"):
        if getattr(req, field) not in (None, "none"):
            raise no_tools(field)
    if req.response_format is not None and req.response_format.get("type") != "text":
        raise InvalidRequest("response_format.type: only 'text' is served", param="response_format.type")
    if req.stream_options is not None and not req.stream:
        raise InvalidRequest("stream_options: only allowed when stream is true", param="stream_options")
