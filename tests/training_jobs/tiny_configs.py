"""Tiny training configs for tests: exit after 2 decoder layers, LoRA on 1, one epoch on 2 rows per intent.

Seconds of CPU, yet every stage of the real job runs (split, cache, LoRA steps, packaging, publish).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def tiny_config(name: str = "tiny-intent", version: str = "0.1.0", **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "version": version,
        "description": "test adapter",
        "quantization": "none",
        "device": "cpu",
        "data": {"max_train_per_intent": 2, "max_validation_per_intent": 1, "max_length": 24},
        "lora": {"r": 4, "alpha": 8, "layers": 1},
        "head": {"exit_layer": 2, "pooling": "mean"},
        "optim": {"epochs": 1, "batch_size": 32, "lr": 2e-3, "head_lr": 2e-2},
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            cfg[key] = {**cfg.get(key, {}), **value}
        else:
            cfg[key] = value
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path
