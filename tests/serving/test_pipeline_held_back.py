"""A retrieved chunk with PII is held back from the prompt, and the request is answered from the rest.

The chunk is written into a test index directly (ingest without the guard's screen, as a knowledge
base loaded by other means would be); everything else is real: Presidio, MiniLM + Milvus Lite, the
SmolLM2 weights. The generator is wrapped to record the prompt it was given (a spy, not a fake)."""

from __future__ import annotations

import pytest
import yaml
from generator_spy import GeneratorSpy
from kbutil import banking77_rows

from finserve.serving.audit import read_records
from finserve.serving.pipeline import RequestContext
from finserve.serving.retrieval import RetrievalConfig, ingest
from finserve.serving.retrieval.config import default_answers_path
from finserve.serving.schemas import ChatCompletionRequest

pytestmark = pytest.mark.slow

CARD = "4458 5630 7407 7526"
RISKY = f"Cards arrive within five working days. For a replacement quote the test card {CARD}."


@pytest.fixture(scope="module")
def risky_index(tmp_path_factory):
    path = tmp_path_factory.mktemp("risky") / "milvus.db"
    answers = yaml.safe_load(default_answers_path().read_text())
    answers["card_arrival"] = RISKY
    edited = path.parent / "answers.yaml"
    edited.write_text(yaml.safe_dump(answers))
    rows = banking77_rows(("card_arrival", "lost_or_stolen_card", "activate_my_card"), per_intent=12)
    ingest(
        RetrievalConfig(milvus_uri=str(path), redis_url=None), rows=rows, answers_path=edited, progress=False
    )
    return path


async def test_risky_chunk_is_held_back_and_the_answer_still_comes(tmp_path, risky_index):
    from stack_config import stack_config

    from finserve.serving.local import build_local_stack

    cfg = stack_config(tmp_path, risky_index)
    cfg.generator = cfg.generator.model_copy(update={"max_new_tokens": 8})
    stack = build_local_stack(cfg)
    spy = GeneratorSpy(stack.pipeline.generator)
    stack.pipeline.generator = spy
    await stack.start()
    try:
        req = ChatCompletionRequest(
            model="finserve-banking",
            max_tokens=8,
            messages=[{"role": "user", "content": "My new card has not arrived yet"}],
        )
        out = await stack.pipeline.chat(req, RequestContext(request_id="held-back-1"))
    finally:
        await stack.stop()
    info = out.finserve
    assert info.held_back == ["answer:card_arrival"]
    assert "answer:card_arrival" not in info.citations and info.citations  # answered from the rest
    assert info.pii["context"]["CREDIT_CARD"] == 1
    assert out.choices[0].message.content.strip()
    [sent] = spy.requests
    prompt = "\n".join(m.content for m in sent.messages)
    assert "five working days" not in prompt and "4458" not in prompt  # not masked in: left out
    [line] = list(read_records(cfg.audit.path))  # the request record (checkpoints are lines too)
    assert line["held_back"] == ["answer:card_arrival"] and line["status"] == 200
    metrics = stack.pipeline.metrics.registry.get_sample_value(
        "finserve_context_chunks_held_back_total",
        {"model": "finserve-banking", "adapter": "base", "version": "0.0.0", "tenant": "default"},
    )
    assert metrics == 1.0


async def test_a_policy_limited_to_other_types_keeps_the_chunk_masked(tmp_path, risky_index):
    from stack_config import stack_config

    from finserve.serving.local import build_local_stack
    from finserve.serving.retrieval.pii_policy import HoldBackConfig

    cfg = stack_config(tmp_path, risky_index)
    cfg.retrieval = cfg.retrieval.model_copy(update={"hold_back": HoldBackConfig(entities=["US_SSN"])})
    stack = build_local_stack(cfg)
    spy = GeneratorSpy(stack.pipeline.generator)
    stack.pipeline.generator = spy
    await stack.start()
    try:
        req = ChatCompletionRequest(
            model="finserve-banking",
            max_tokens=4,
            messages=[{"role": "user", "content": "My new card has not arrived yet"}],
        )
        out = await stack.pipeline.chat(req, RequestContext())
    finally:
        await stack.stop()
    assert out.finserve.held_back == [] and "answer:card_arrival" in out.finserve.citations
    prompt = "\n".join(m.content for m in spy.requests[0].messages)
    assert "five working days" in prompt and "4458" not in prompt  # masked, as before this policy existed
