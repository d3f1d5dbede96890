"""An answer that repeats the assistant's instructions never reaches the customer.

The guard (Presidio), router and audit log are the real ones; retrieval and the generator are the scripted
stand-ins of scripted_stages.py (a fake, and why: the real model repeats its instructions only for some prompts
and knowledge, not on demand; the pipeline's handling is what is tested here).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scripted_stages import Generator, scripted_pipeline

from finserve.serving.audit import read_records
from finserve.serving.config import DEFAULT_MODEL, DEFAULT_SYSTEM_PROMPT, ServingConfig
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.pipeline import RequestContext
from finserve.serving.schemas import ChatCompletionRequest
from finserve.serving.stages import LocalGuard

CURATED = "Cards arrive within 5 working days."  # the scripted retrieval's card_arrival answer
ANSWER = "Your card usually arrives within five working days of ordering, so please allow a little longer."


@pytest.fixture(scope="module")
def guard() -> LocalGuard:
    return LocalGuard(PIIGuard(ServingConfig().guard))


def _request(stream: bool = False) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model=DEFAULT_MODEL, stream=stream, messages=[{"role": "user", "content": "Where is my new card?"}]
    )


def _pipeline(tmp_path: Path, guard: LocalGuard, text: str):  # noqa: ANN202
    return scripted_pipeline(ServingConfig(), tmp_path, guard, generator=Generator(text.split()))


def _degraded(pipeline, kind: str = "fallback") -> float | None:  # noqa: ANN001
    return pipeline.metrics.registry.get_sample_value(
        "finserve_degraded_responses_total",
        {
            "model": DEFAULT_MODEL,
            "adapter": "base",
            "version": "0.0.0",
            "kind": kind,
            "cause": "instructions_echoed",
        },
    )


async def test_an_answer_that_is_the_instructions_is_replaced_by_the_curated_one(tmp_path, guard):
    pipeline = _pipeline(tmp_path, guard, DEFAULT_SYSTEM_PROMPT)
    out = await pipeline.chat(_request(), RequestContext())
    assert out.choices[0].message.content == CURATED
    assert out.finserve.degraded == "fallback"
    [line] = list(read_records(tmp_path / "audit.jsonl"))
    assert line["output"] == CURATED and "customer assistant of a bank" not in str(line)
    assert _degraded(pipeline) == 1.0


async def test_a_streamed_echo_at_the_start_is_never_sent(tmp_path, guard):
    pipeline = _pipeline(tmp_path, guard, DEFAULT_SYSTEM_PROMPT)
    chunks = [c async for c in await pipeline.chat_stream(_request(stream=True), RequestContext())]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == CURATED
    assert chunks[-1]["finserve"]["degraded"] == "fallback"


async def test_a_streamed_echo_after_a_real_answer_ends_the_answer_before_it(tmp_path, guard):
    pipeline = _pipeline(tmp_path, guard, f"{ANSWER} {DEFAULT_SYSTEM_PROMPT}")
    chunks = [c async for c in await pipeline.chat_stream(_request(stream=True), RequestContext())]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text and ANSWER.startswith(text.strip())  # some of the answer, released before the echo began
    assert "customer assistant" not in text and "You are" not in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    [line] = list(read_records(tmp_path / "audit.jsonl"))
    assert line["output"] == text
    assert _degraded(pipeline, "cut") == 1.0 and _degraded(pipeline) is None


async def test_an_answer_quoting_a_few_words_of_the_instructions_stands(tmp_path, guard):
    words = "Please contact support: I will pass it to a colleague who can check your card details."
    pipeline = _pipeline(tmp_path, guard, words)
    out = await pipeline.chat(_request(), RequestContext())
    assert out.choices[0].message.content == words and out.finserve.degraded is None
    assert _degraded(pipeline) is None
