"""The vLLM engine's pure mappings (vLLM itself only runs on GPUs: see tests/gpu/)."""

from __future__ import annotations

import pytest

from finserve.contracts import AdapterRef
from finserve.serving.inference.config import GeneratorConfig, VLLMOptions
from finserve.serving.inference.types import ChatMessage, GenerationRequest
from finserve.serving.inference.vllm_mapping import LoraIds, engine_kwargs, finish_reason, sampling_kwargs

V1, V2 = AdapterRef.parse("bank@1.0.0"), AdapterRef.parse("bank@2.0.0")


def request(**kw: object) -> GenerationRequest:
    return GenerationRequest(messages=[ChatMessage(role="user", content="hi")], **kw)


def test_lora_ids_are_stable_positive_and_never_reused() -> None:
    ids = LoraIds()
    assert ids.assign(V1) == 1
    assert ids.assign(V2) == 2
    assert ids.assign(V1) == 1
    assert ids.get(AdapterRef.parse("other@1.0.0")) is None
    with pytest.raises(ValueError):
        ids.assign(AdapterRef.base())


def test_greedy_request_maps_to_temperature_zero_without_top_p() -> None:
    kw = sampling_kwargs(request(top_p=0.5), default_max_tokens=64)
    assert kw == {"max_tokens": 64, "temperature": 0.0, "top_p": 1.0, "skip_special_tokens": True}


def test_sampled_request_carries_stop_seed_and_limits() -> None:
    kw = sampling_kwargs(request(max_tokens=9, temperature=0.7, top_p=0.9, stop=["\n\n"], seed=3), 64)
    assert kw["max_tokens"] == 9 and kw["temperature"] == 0.7 and kw["top_p"] == 0.9
    assert kw["stop"] == ["\n\n"] and kw["seed"] == 3


def test_finish_reasons_map_and_abort_is_an_error() -> None:
    assert finish_reason(None) is None
    assert finish_reason("stop") == "stop"
    assert finish_reason("length") == "length"
    with pytest.raises(RuntimeError):
        finish_reason("abort")


def test_engine_kwargs_enable_lora_and_omit_unset_options() -> None:
    cfg = GeneratorConfig(engine="vllm", vllm=VLLMOptions(max_loras=2, max_model_len=None, max_lora_rank=32))
    kw = engine_kwargs(cfg, "/models/x")
    assert kw["enable_lora"] is True and kw["max_loras"] == 2 and kw["max_lora_rank"] == 32
    assert kw["model"] == kw["tokenizer"] == "/models/x"
    assert "max_model_len" not in kw and "quantization" not in kw and "max_cpu_loras" not in kw
