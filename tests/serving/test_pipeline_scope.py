"""A question the knowledge base does not cover gets the configured reply, not a generated one.

Everything is real (Presidio, MiniLM + Milvus Lite with real Banking77 examples, the SmolLM2 weights); the
generator is wrapped to record what it was asked (a spy, not a fake): an out-of-scope question must not reach
it at all, an in-scope one must.
"""

from __future__ import annotations

import pytest
from generator_spy import GeneratorSpy
from stack_config import stack_config

from finserve.serving.audit import read_records
from finserve.serving.intent.scope import OUT_OF_SCOPE
from finserve.serving.local import build_local_stack
from finserve.serving.pipeline import RequestContext
from finserve.serving.schemas import ChatCompletionRequest

pytestmark = pytest.mark.slow

OFF_TOPIC = "Can you recommend a good restaurant near the river for tonight?"
ON_TOPIC = "My new card has not arrived yet"
LABELS = {"model": "finserve-banking", "adapter": "base", "version": "0.0.0", "tenant": "default"}


def _request(text: str, stream: bool = False) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model="finserve-banking", max_tokens=8, stream=stream, messages=[{"role": "user", "content": text}]
    )


@pytest.fixture
async def stack(tmp_path, small_index):
    cfg = stack_config(tmp_path, small_index)
    built = build_local_stack(cfg)
    built.spy = GeneratorSpy(built.pipeline.generator)
    built.pipeline.generator = built.spy
    await built.start()
    try:
        yield built
    finally:
        await built.stop()


async def test_an_off_topic_question_gets_the_configured_reply_without_the_model(stack):
    out = await stack.pipeline.chat(_request(OFF_TOPIC), RequestContext(request_id="scope-1"))
    scope = stack.pipeline.config.intent.scope
    assert out.choices[0].message.content == scope.answer
    assert out.choices[0].finish_reason == "stop"
    assert out.finserve.intent == OUT_OF_SCOPE and out.finserve.citations == []
    assert out.finserve.degraded is None  # nothing failed: the question is not one the knowledge covers
    assert out.usage.completion_tokens == 0
    assert stack.spy.requests == []
    [line] = list(read_records(stack.pipeline.config.audit.path))
    assert line["status"] == 200 and line["intent"] == OUT_OF_SCOPE and line["output"] == scope.answer
    registry = stack.pipeline.metrics.registry
    assert registry.get_sample_value("finserve_out_of_scope_total", LABELS) == 1.0


async def test_a_covered_question_is_still_answered_by_the_model(stack):
    out = await stack.pipeline.chat(_request(ON_TOPIC), RequestContext())
    assert out.finserve.intent != OUT_OF_SCOPE and out.finserve.citations
    assert len(stack.spy.requests) == 1
    assert out.choices[0].message.content != stack.pipeline.config.intent.scope.answer
    assert stack.pipeline.metrics.registry.get_sample_value("finserve_out_of_scope_total", LABELS) is None


async def test_a_streamed_off_topic_question_gets_the_reply_in_chunks_and_one_audit_line(stack):
    stream = await stack.pipeline.chat_stream(_request(OFF_TOPIC, stream=True), RequestContext())
    chunks = [c async for c in stream]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == stack.pipeline.config.intent.scope.answer
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["finserve"]["intent"] == OUT_OF_SCOPE
    assert stack.spy.requests == []
    [line] = list(read_records(stack.pipeline.config.audit.path))
    assert line["intent"] == OUT_OF_SCOPE and line["status"] == 200


async def test_with_the_gate_off_every_question_reaches_the_model(tmp_path, small_index):
    cfg = stack_config(tmp_path, small_index)
    cfg.intent = cfg.intent.model_copy(
        update={"scope": cfg.intent.scope.model_copy(update={"enabled": False})}
    )
    built = build_local_stack(cfg)
    spy = GeneratorSpy(built.pipeline.generator)
    built.pipeline.generator = spy
    await built.start()
    try:
        out = await built.pipeline.chat(_request(OFF_TOPIC), RequestContext())
    finally:
        await built.stop()
    assert out.finserve.intent != OUT_OF_SCOPE and len(spy.requests) == 1


async def test_a_listed_off_topic_question_is_turned_away_even_when_similar_enough(tmp_path, small_index):
    # The threshold set so low that similarity alone would let it through: the shipped off-topic list (indexed
    # by ingest as examples of out_of_scope) holds "Do you offer credit cards with cashback?", nearer than any
    # card-fee example.
    cfg = stack_config(tmp_path, small_index)
    cfg.intent = cfg.intent.model_copy(
        update={"scope": cfg.intent.scope.model_copy(update={"min_similarity": 0.2})}
    )
    built = build_local_stack(cfg)
    spy = GeneratorSpy(built.pipeline.generator)
    built.pipeline.generator = spy
    await built.start()
    try:
        off = await built.pipeline.chat(_request("Do you offer cashback on card payments?"), RequestContext())
        on = await built.pipeline.chat(_request(ON_TOPIC), RequestContext())
    finally:
        await built.stop()
    assert off.finserve.intent == OUT_OF_SCOPE and off.choices[0].message.content == cfg.intent.scope.answer
    assert on.finserve.intent != OUT_OF_SCOPE and len(spy.requests) == 1


def test_over_http_both_apis_say_out_of_scope_and_nothing_is_degraded(local_client):
    # Through the FastAPI app (OpenAI chat and KServe OIP v2 REST), not the pipeline object.
    scope = local_client.config.intent.scope
    chat = local_client.post(
        "/v1/chat/completions",
        json={"model": "finserve-banking", "messages": [{"role": "user", "content": OFF_TOPIC}]},
    )
    assert chat.status_code == 200, chat.text
    body = chat.json()
    assert body["choices"][0]["message"]["content"] == scope.answer
    assert body["finserve"]["intent"] == OUT_OF_SCOPE and body["finserve"]["citations"] == []
    assert "x-finserve-degraded" not in chat.headers
    infer = local_client.post(
        "/v2/models/finserve-banking/infer",
        json={"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": [OFF_TOPIC, ON_TOPIC]}]},
    )
    assert infer.status_code == 200, infer.text
    outputs = {o["name"]: o["data"] for o in infer.json()["outputs"]}
    assert outputs["intent"][0] == OUT_OF_SCOPE and outputs["text"][0] == scope.answer
    assert outputs["intent"][1] != OUT_OF_SCOPE and outputs["text"][1] != scope.answer


def _conversation(*turns: str) -> ChatCompletionRequest:
    roles = ["user", "assistant"] * len(turns)
    return ChatCompletionRequest(
        model="finserve-banking",
        max_tokens=8,
        messages=[{"role": r, "content": t} for r, t in zip(roles, turns, strict=False)],
    )


async def test_a_follow_up_is_judged_with_the_previous_message_but_a_listed_off_topic_one_is_not(stack):
    follow_up = "What do I do next?"  # far from every indexed question on its own
    alone = await stack.pipeline.chat(_request(follow_up), RequestContext())
    assert alone.finserve.intent == OUT_OF_SCOPE and stack.spy.requests == []
    answered = await stack.pipeline.chat(
        _conversation(ON_TOPIC, "I'm sorry to hear that.", follow_up), RequestContext()
    )
    assert answered.finserve.intent == "card_arrival" and len(stack.spy.requests) == 1
    assert "answer:card_arrival" in answered.finserve.citations
    # "Write me a poem about money" is on the shipped off-topic list: no earlier message makes it in scope.
    listed = await stack.pipeline.chat(
        _conversation(ON_TOPIC, "I'm sorry to hear that.", "Write me a poem about money"), RequestContext()
    )
    assert listed.finserve.intent == OUT_OF_SCOPE and len(stack.spy.requests) == 1
