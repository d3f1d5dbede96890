"""``build_engine``: the generator backend a config names. It imports the backends (lazily: nothing
heavy loads before ``start()``); the backends import engine.py, never this module."""

from __future__ import annotations

from .config import GeneratorConfig
from .engine import Engine


def build_engine(config: GeneratorConfig) -> Engine:
    """The engine the config names (a failover pool when it lists providers). Nothing heavy is imported or
    loaded until ``start()``."""
    if config.providers:
        from ..breaker import CircuitBreaker
        from .failover import FailoverEngine, Provider
        from .openai_engine import OpenAIEngine

        single = config.model_copy(update={"providers": []})
        return FailoverEngine(
            [
                Provider(
                    p.name,
                    OpenAIEngine(p.openai, config, p.name) if p.openai is not None else build_engine(single),
                    CircuitBreaker(p.retry_s),
                    p.timeout_s,
                )
                for p in config.providers
            ]
        )
    if config.engine == "openai":
        from .openai_engine import OpenAIEngine

        if config.openai is None:
            raise ValueError("engine openai needs generator.openai (base_url, models)")
        return OpenAIEngine(config.openai, config)
    if config.engine == "vllm":
        from .vllm_engine import VLLMEngine  # vllm itself is imported in start(), on GPU machines only

        return VLLMEngine(config)
    if config.engine == "llamacpp":
        from .llamacpp_engine import LlamaCppEngine  # xllamacpp itself is imported in start()

        return LlamaCppEngine(config)
    from .transformers_engine import TransformersEngine

    return TransformersEngine(config)
