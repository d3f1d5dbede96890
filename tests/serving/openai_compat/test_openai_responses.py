"""The official openai SDK's Responses API (client.responses) and models.retrieve against finserve over real
HTTP: the whole in-process stack (Presidio, MiniLM + Milvus Lite, a real Redis, the real SmolLM2 weights)
served by uvicorn (conftest's `served`). A response is one guarded chat request: same guards, same audit line."""

from __future__ import annotations

import openai
import pytest

from finserve.serving.audit import read_records

pytestmark = pytest.mark.slow

MODEL = "finserve-banking"
EMBEDDER = "all-MiniLM-L6-v2"
CARD = "4111 1111 1111 1111"


@pytest.fixture(scope="module")
def client(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.base}/v1", api_key=served.key, max_retries=0, timeout=120)


def _audit(served, request_id: str) -> list[dict]:
    return [x for x in read_records(served.config.audit.path) if x["request_id"] == request_id]


def test_a_text_input_gets_one_message_of_output_text_with_usage(client, served):
    resp = client.responses.create(model=MODEL, input=f"My card {CARD} never arrived", max_output_tokens=16)
    assert resp.object == "response" and resp.status in ("completed", "incomplete")
    assert resp.output_text.strip() and CARD not in resp.output_text
    [item] = resp.output
    assert item.type == "message" and item.role == "assistant" and item.content[0].type == "output_text"
    assert resp.usage.input_tokens > 0 and 0 < resp.usage.output_tokens <= 16
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    info = resp.model_extra["finserve"]
    assert info["pii"]["input"] == {"CREDIT_CARD": 1} and resp.id == f"resp_{info['request_id']}"
    [line] = _audit(served, info["request_id"])
    assert line["status"] == 200 and CARD not in line["input"] and line["output"] == resp.output_text


def test_a_conversation_of_items_with_instructions(client):
    resp = client.responses.create(
        model=MODEL,
        instructions="Answer in one sentence.",
        input=[
            {"role": "user", "content": "My card has not arrived."},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Sorry to hear that."}]},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "What should I do?"}],
            },
        ],
        max_output_tokens=12,
        store=False,
        metadata={"ticket": "T-1"},
        safety_identifier="customer-77",
    )
    assert resp.output_text.strip() and resp.metadata == {} and resp.store is False
    assert resp.instructions == "Answer in one sentence."


def test_a_short_budget_is_an_incomplete_response(client):
    resp = client.responses.create(
        model=MODEL, input="Explain everything about card delivery.", max_output_tokens=2
    )
    assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"


def test_streamed_events_and_the_sdks_stream_helper(client, served):
    events = list(
        client.responses.create(
            model=MODEL, input="How do I activate my card?", max_output_tokens=12, stream=True
        )
    )
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert (
        kinds[-4:]
        == [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        or kinds[-1] == "response.incomplete"
    )
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert text.strip() and final.output_text == text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert 0 < final.usage.output_tokens <= 12
    [line] = _audit(served, final.model_extra["finserve"]["request_id"])
    assert line["status"] == 200 and line["output"] == text
    # the SDK's own accumulator checks the event sequence as it goes (its final response needs a completed
    # one: a budget the answer fits in)
    with client.responses.stream(
        model=MODEL, input="What is the exchange rate?", max_output_tokens=200
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        done = stream.get_final_response()
    assert done.status == "completed" and done.output_text == "".join(deltas) and done.output_text.strip()


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"tools": [{"type": "function", "name": "balance", "parameters": {"type": "object"}}]}, "tools"),
        (
            {
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}
                ]
            },
            "input.0.content.0.type",
        ),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": "{}"}]}, "input.0.type"),
        ({"text": {"format": {"type": "json_object"}}}, "text.format.type"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"input": []}, "input"),
    ],
)
def test_what_finserve_cannot_honour_is_a_bad_request_naming_the_field(client, served, extra, param):
    body = {"model": MODEL, "input": "hi", **extra}
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(**body)
    assert err.value.status_code == 400 and err.value.param == param
    [line] = _audit(served, err.value.request_id)  # refused, and still audited
    assert line["status"] == 400 and line["error"] == "invalid_request"


def test_errors_arrive_as_the_sdks_typed_exceptions(client, served):
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model="gpt-4o", input="hi")
    assert err.value.param == "model" and "gpt-4o" not in err.value.message
    with pytest.raises(openai.UnprocessableEntityError):
        client.responses.create(model=MODEL, input="my SSN is 536-22-8145")
    assert "536-22-8145" not in served.config.audit.path.read_text()


def test_models_retrieve_names_a_served_model_and_refuses_others(client):
    assert client.models.retrieve(MODEL).id == MODEL
    assert client.models.retrieve(EMBEDDER).id == EMBEDDER
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("gpt-4o")
    assert "gpt-4o" not in err.value.message
