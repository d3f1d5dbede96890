"""Our generation requests in llama.cpp's terms, and its streamed chunks and metrics in ours."""

from __future__ import annotations

import pytest

from finserve.contracts import AdapterRef
from finserve.serving.inference.llamacpp_mapping import (
    LlamaCppError,
    completion_body,
    parse_chunk,
    parse_prometheus,
)
from finserve.serving.inference.types import ChatMessage, GenerationRequest, Usage

MSG = [ChatMessage(role="user", content="hi")]
A = AdapterRef.parse("a@1.0.0")
B = AdapterRef.parse("b@1.0.0")


def test_body_sets_every_loaded_lora_scale_for_the_request() -> None:
    body = completion_body(GenerationRequest(messages=MSG, adapter=B), [1, 2, 3], 16, (A, B))
    assert body["lora"] == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}]
    base = completion_body(GenerationRequest(messages=MSG), [1], 16, (A, B))
    assert [entry["scale"] for entry in base["lora"]] == [0.0, 0.0]


def test_body_streams_token_ids_with_the_prompt_cache_and_our_sampling() -> None:
    req = GenerationRequest(messages=MSG, temperature=0.7, top_p=0.9, stop=["\n\n"], seed=7)
    body = completion_body(req, [5, 6], 32, ())
    assert body["prompt"] == [5, 6] and body["max_tokens"] == 32
    assert body["stream"] is True and body["cache_prompt"] is True
    assert (body["temperature"], body["top_p"], body["top_k"], body["min_p"]) == (0.7, 0.9, 0, 0.0)
    assert body["stop"] == ["\n\n"] and body["seed"] == 7
    greedy = completion_body(GenerationRequest(messages=MSG, top_p=0.5), [5], 8, ())
    assert greedy["temperature"] == 0.0 and greedy["top_p"] == 1.0
    assert "stop" not in greedy and "seed" not in greedy


def test_chunks_carry_text_and_the_last_one_usage_with_cache_hits() -> None:
    assert parse_chunk({"choices": [{"text": " card", "finish_reason": None}]}).delta == " card"
    last = parse_chunk(
        {
            "choices": [{"text": "", "finish_reason": "length"}],
            "usage": {
                "prompt_tokens": 40,
                "completion_tokens": 8,
                "prompt_tokens_details": {"cached_tokens": 32},
            },
        }
    )
    assert last.finish_reason == "length"
    assert last.usage == Usage(prompt_tokens=40, completion_tokens=8, cached_tokens=32)


@pytest.mark.parametrize(
    "payload",
    [
        {"error": {"code": 400, "message": "the request exceeds the context size"}},
        {"code": 500, "type": "server_error", "message": "boom"},
        {"choices": [{"text": "", "finish_reason": "abort"}]},
    ],
)
def test_error_payloads_raise(payload: dict) -> None:
    with pytest.raises(LlamaCppError):
        parse_chunk(payload)


def test_metrics_text_becomes_values_without_the_prefix() -> None:
    text = (
        "# HELP llamacpp:tokens_predicted_total Number of generation tokens processed\n"
        "# TYPE llamacpp:tokens_predicted_total counter\n"
        "llamacpp:tokens_predicted_total 46\nllamacpp:requests_processing 2\nbroken line\n"
    )
    assert parse_prometheus(text) == {"tokens_predicted_total": 46.0, "requests_processing": 2.0}
