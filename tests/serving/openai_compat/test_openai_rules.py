"""The OpenAI request rules and mappings as pure functions: what is honoured, what is refused and
under which field name (the SDK tests check the same over HTTP with the real stack)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from pydantic import ValidationError

from finserve.serving.errors import InvalidRequest
from finserve.serving.gateway import validation_message
from finserve.serving.openai_compat.completions import (
    CompletionRequest,
    check_completion_request,
    to_chat_request,
    to_completion_chunk,
)
from finserve.serving.openai_compat.embeddings import EmbeddingRequest, _encode, embedding_model
from finserve.serving.openai_compat.rules import check_chat_request
from finserve.serving.retrieval.config import RetrievalConfig
from finserve.serving.schemas import ChatCompletionRequest


def chat(**extra) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    )


def refused(req) -> str:
    with pytest.raises(InvalidRequest) as err:
        check_chat_request(req)
    assert err.value.message.startswith(err.value.param)
    return err.value.param


def test_text_parts_are_joined_and_developer_is_system():
    req = chat(
        messages=[
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "text", "text": "card"}, {"type": "text", "text": "lost"}]},
        ]
    )
    check_chat_request(req)
    assert [(m.prompt_role, m.text) for m in req.messages] == [
        ("system", "Be brief."),
        ("user", "card\nlost"),
    ]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}]}
                ]
            },
            "messages.0.content.1.type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]},
            "messages.0.content.0.text",
        ),
        ({"messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages.0.content.0.type"),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "tool", "content": "x", "tool_call_id": "1"},
                ]
            },
            "messages.1.role",
        ),
        ({"messages": [{"role": "function", "content": "x", "name": "f"}]}, "messages.0.role"),
        (
            {"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}]},
            "messages.0.tool_calls",
        ),
        ({"messages": [{"role": "user", "content": None}]}, "messages.0.content"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"stop": ["1", "2", "3", "4", "5"]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"response_format": {"type": "json_schema"}}, "response_format.type"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_what_cannot_be_honoured_is_refused_by_name(extra, param):
    assert refused(chat(**extra)) == param


@pytest.mark.parametrize(
    "extra",
    [
        {"n": 1},
        {"logprobs": False},
        {"tools": []},
        {"tool_choice": "none"},
        {"stop": "."},
        {"stop": ["a", "b", "c", "d"]},
        {"response_format": {"type": "text"}},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"seed": 3, "max_completion_tokens": 5},
        {"frequency_penalty": 0.5, "metadata": {"a": "b"}, "store": False},  # other OpenAI fields: ignored
    ],
)
def test_what_can_be_honoured_passes(extra):
    check_chat_request(chat(**extra))


def test_content_of_the_wrong_shape_names_the_field_without_echoing_it():
    with pytest.raises(ValidationError) as err:
        chat(messages=[{"role": "user", "content": 4111111111111111}])
    msg, field = validation_message(err.value)
    assert field == "messages.0.content" and "4111" not in msg


def test_completion_prompts_and_refusals():
    req = CompletionRequest(model="m", prompt=["a", "b"], max_tokens=4, stop=".", user="u")
    assert check_completion_request(req, 8) == ["a", "b"]
    asked = to_chat_request(req, "b")
    assert (asked.messages[0].role, asked.messages[0].content, asked.max_tokens, asked.stop) == (
        "user",
        "b",
        4,
        ".",
    )
    for extra, param in (
        ({"echo": True}, "echo"),
        ({"suffix": "s"}, "suffix"),
        ({"best_of": 2}, "best_of"),
        ({"n": 2}, "n"),
        ({"logprobs": 1}, "logprobs"),
        ({"stream": True, "prompt": ["a", "b"]}, "prompt"),
        ({"prompt": ["a"] * 9}, "prompt"),
    ):
        with pytest.raises(InvalidRequest) as err:
            check_completion_request(CompletionRequest(**{"model": "m", "prompt": "a", **extra}), 8)
        assert err.value.param == param
    for bad in ([1, 2], [], 5, [["a"]]):
        with pytest.raises(ValidationError) as verr:
            CompletionRequest(model="m", prompt=bad)
        assert validation_message(verr.value)[1] == "prompt"


def test_chat_chunks_become_text_completion_chunks():
    chunk = {
        "id": "chatcmpl-r1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
    }
    out = to_completion_chunk(chunk)
    assert out == {
        "id": "cmpl-r1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "text": "Hi", "logprobs": None, "finish_reason": None}],
    }
    usage = to_completion_chunk({**chunk, "choices": [], "usage": {"prompt_tokens": 1}})
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 1}


def test_embedding_request_shapes_and_base64():
    assert EmbeddingRequest(model="e", input="a").encoding_format == "float"
    for bad in ([1, 2, 3], [[1, 2]], [], None):
        with pytest.raises(ValidationError) as err:
            EmbeddingRequest(model="e", input=bad)
        assert validation_message(err.value)[1] == "input"
    vector = [0.5, -0.25, 1.0]
    decoded = np.frombuffer(base64.b64decode(_encode(vector, "base64")), dtype="<f4")
    assert decoded.tolist() == vector and _encode(vector, "float") == vector
    assert embedding_model(RetrievalConfig()) == "all-MiniLM-L6-v2"
