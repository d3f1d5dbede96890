"""The Responses API mapping on its own: request rules and the event stream built from chat chunks."""

from __future__ import annotations

import pytest

from finserve.serving.errors import InvalidRequest
from finserve.serving.openai_compat.responses import (
    ResponseEvents,
    ResponsesRequest,
    check_responses_request,
    to_chat_request,
)

FINSERVE = {"request_id": "r1", "intent": "card_arrival", "adapter": "base@0.0.0", "route": "stable"}


def _req(**fields: object) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m", "input": "hi", **fields})


def test_input_items_and_instructions_become_chat_messages() -> None:
    req = _req(
        instructions="Be brief.",
        input=[
            {"role": "developer", "content": "Reply in English."},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}],
            },
        ],
    )
    messages = check_responses_request(req, max_messages=8)
    assert [(m.role, m.content) for m in messages] == [
        ("system", "Be brief."),
        ("developer", "Reply in English."),
        ("user", "a\nb"),
    ]
    chat = to_chat_request(req, messages)
    assert chat.stream_options is None and chat.max_tokens is None


def test_safety_identifier_is_read_as_the_user_and_max_output_tokens_is_charged() -> None:
    req = _req(safety_identifier="customer-1", max_output_tokens=5)
    assert (req.user, req.safety_identifier, req.max_tokens) == ("customer-1", None, 5)
    assert _req(user="u", safety_identifier="s").user == "u"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": [{"role": "tool", "content": "x"}]}, "input.0.role"),
        ({"input": ["just a string"]}, "input.0"),
        ({"input": [{"role": "user", "content": []}]}, "input.0.content"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]},
            "input.0.content.0.text",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"input": [{"role": "user", "content": "x"}] * 9}, "input"),
    ],
)
def test_what_cannot_be_honoured_names_the_field(fields: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        check_responses_request(_req(**fields), max_messages=8)
    assert err.value.param == param


def _chunks(pieces: list[str], finish: str, usage: dict | None):  # noqa: ANN202 - async generator
    async def gen():  # noqa: ANN202
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            chunk = {
                "choices": [
                    {"index": 0, "delta": {"content": piece}, "finish_reason": finish if last else None}
                ]
            }
            if last:
                chunk["finserve"] = FINSERVE
            yield chunk
        if usage is not None:
            yield {"choices": [], "usage": usage}

    return gen()


async def test_events_carry_the_text_then_an_incomplete_response_with_usage() -> None:
    usage = {
        "prompt_tokens": 30,
        "completion_tokens": 2,
        "total_tokens": 32,
        "prompt_tokens_details": {"cached_tokens": 16},
    }
    events = [
        e async for e in ResponseEvents(_chunks(["Your ", "card"], "length", usage), _req(stream=True), "r1")
    ]
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert deltas == ["Your ", "card"]
    final = events[-1]
    assert final["type"] == "response.incomplete"
    response = final["response"]
    assert response["status"] == "incomplete" and response["incomplete_details"] == {
        "reason": "max_output_tokens"
    }
    assert response["output"][0]["content"][0]["text"] == "Your card"
    assert (
        response["usage"]["input_tokens_details"] == {"cached_tokens": 16}
        and response["usage"]["total_tokens"] == 32
    )
    assert response["finserve"]["request_id"] == "r1"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


async def test_closing_the_events_closes_the_pipeline_stream() -> None:
    closed = []

    async def gen():  # noqa: ANN202
        try:
            yield {"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]}
            yield {"choices": [{"index": 0, "delta": {"content": "b"}, "finish_reason": "stop"}]}
        finally:
            closed.append(True)

    events = ResponseEvents(gen(), _req(stream=True), "r1")
    async for event in events:
        if event["type"] == "response.output_text.delta":
            break
    await events.aclose()  # the client left: the pipeline's stream must end now (its audit line)
    assert closed == [True]
