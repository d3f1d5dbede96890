"""Generator config: embedded defaults, strictness, adapter references checked at load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from finserve.contracts import AdapterRef
from finserve.serving.inference.base_model import BASE_MODEL_ID
from finserve.serving.inference.config import GeneratorConfig


def test_defaults_are_the_embedded_cpu_setup() -> None:
    cfg = GeneratorConfig()
    assert cfg.engine == "transformers" and cfg.model_dir is None
    assert cfg.base_model_id == BASE_MODEL_ID
    assert cfg.cpu.weights == "int8" and cfg.cpu.forward == "lean"
    assert cfg.cpu.model_file is None  # the packaged SmolLM2 GGUF, read tensor by tensor
    assert cfg.vllm.max_lora_rank >= 8


def test_the_base_model_is_named_once() -> None:
    assert GeneratorConfig.model_validate({"cpu": {"model_file": "/models/m.gguf"}}).model_dir is None
    with pytest.raises(ValidationError, match="model_dir and cpu.model_file"):
        GeneratorConfig.model_validate({"model_dir": "/models/m", "cpu": {"model_file": "/models/m.gguf"}})


def test_every_field_is_described() -> None:
    for model in (
        GeneratorConfig,
        type(GeneratorConfig().cpu),
        type(GeneratorConfig().vllm),
        type(GeneratorConfig().llamacpp),
    ):
        missing = [name for name, f in model.model_fields.items() if not f.description]
        assert missing == [], f"{model.__name__}: {missing}"


def test_unknown_keys_and_bad_refs_are_rejected() -> None:
    with pytest.raises(ValidationError):
        GeneratorConfig.model_validate({"engine": "transformers", "max_batch": 4})
    with pytest.raises(ValidationError):
        GeneratorConfig.model_validate({"vllm": {"gpu_mem": 0.5}})
    with pytest.raises(ValidationError, match="NAME@VERSION"):
        GeneratorConfig(preload_adapters=["banking77"])


def test_yaml_round_trip_with_preloads() -> None:
    cfg = GeneratorConfig.from_yaml(
        "engine: vllm\npreload_adapters: [banking77@1.2.0]\nvllm: {max_loras: 2, max_model_len: null}\n"
    )
    assert cfg.engine == "vllm" and cfg.vllm.max_loras == 2 and cfg.vllm.max_model_len is None
    assert cfg.preload_refs() == [AdapterRef(name="banking77", version="1.2.0")]


def test_providers_build_a_failover_pool_in_order_and_need_their_endpoint() -> None:
    from finserve.serving.inference.builder import build_engine
    from finserve.serving.inference.config import OpenAIOptions, ProviderConfig
    from finserve.serving.inference.failover import FailoverEngine
    from finserve.serving.inference.openai_engine import OpenAIEngine

    endpoint = OpenAIOptions(base_url="http://upstream:8000/v1", api_key_env="UPSTREAM_KEY")
    engine = build_engine(
        GeneratorConfig(
            providers=[
                ProviderConfig(name="hosted", engine="openai", openai=endpoint, retry_s=3),
                ProviderConfig(name="cpu", engine="local"),
            ]
        )
    )
    assert isinstance(engine, FailoverEngine)
    assert [(p.name, type(p.engine).__name__, p.breaker.retry_s) for p in engine.providers] == [
        ("hosted", "OpenAIEngine", 3),
        ("cpu", "TransformersEngine", 10.0),
    ]
    assert isinstance(build_engine(GeneratorConfig(engine="openai", openai=endpoint)), OpenAIEngine)
    with pytest.raises(ValidationError, match="openai settings"):
        ProviderConfig(name="hosted", engine="openai")
    with pytest.raises(ValidationError, match="base_url"):
        OpenAIOptions(base_url="upstream:8000")


def test_llamacpp_engine_options_are_strict_and_built_lazily() -> None:
    from finserve.serving.inference.builder import build_engine
    from finserve.serving.inference.llamacpp_engine import LlamaCppEngine

    cfg = GeneratorConfig.from_yaml("engine: llamacpp\nllamacpp: {threads: 1, context_per_slot: 1024}\n")
    assert cfg.llamacpp.threads == 1 and cfg.llamacpp.context_per_slot == 1024
    engine = build_engine(cfg)  # nothing loaded, xllamacpp not even imported, until start()
    assert isinstance(engine, LlamaCppEngine) and not engine.ready()
    with pytest.raises(ValidationError):
        GeneratorConfig.model_validate({"engine": "llamacpp", "llamacpp": {"n_threads": 2}})
    with pytest.raises(ValidationError):
        GeneratorConfig.model_validate({"llamacpp": {"threads": 0}})
