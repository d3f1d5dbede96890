"""Builds a ServingConfig for tests: the embedded defaults pointed at test paths."""

from __future__ import annotations

from pathlib import Path

from finserve.serving.config import ServingConfig


def stack_config(tmp: Path, index: Path, redis_url: str | None = None, **gateway: object) -> ServingConfig:
    """The embedded defaults, pointed at a test index, audit log and registry."""
    cfg = ServingConfig()
    cfg.retrieval = cfg.retrieval.model_copy(update={"milvus_uri": str(index), "redis_url": redis_url})
    cfg.audit = cfg.audit.model_copy(update={"path": tmp / "audit.jsonl"})
    cfg.generator = cfg.generator.model_copy(update={"registry": str(tmp / "registry"), "max_new_tokens": 24})
    cfg.gateway = cfg.gateway.model_copy(update={"max_tokens_default": 24, **gateway})
    # Tests read /metrics on the API port and run side by side: no fixed-port listener of their own.
    cfg.exposure = cfg.exposure.model_copy(update={"metrics_port": None, "metrics_on_api_port": True})
    return cfg
