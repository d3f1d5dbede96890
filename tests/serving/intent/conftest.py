"""Intent fixtures: three real, different versions of one tiny adapter, trained in seconds.

Both are trained by the real job on real Banking77 rows; they differ in data, seed, exit layer,
pooling and input (2.0.0's head also reads the query's sentence embedding), so their predictions
differ and a mix-up between them would show. A third, 3.0.0, also ships a fine-tuned sentence
encoder (its top layer trained) that serving blends with the head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from finserve.contracts import AdapterRef, AdapterRegistry
from finserve.serving.inference.base_model import ensure_base_model

V1 = AdapterRef(name="tiny-intent", version="1.0.0")
V2 = AdapterRef(name="tiny-intent", version="2.0.0")
V3 = AdapterRef(name="tiny-intent", version="3.0.0")


def _config(ref: AdapterRef, **parts: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": ref.name,
        "version": ref.version,
        "quantization": "none",
        "device": "cpu",
        "data": {"max_train_per_intent": 2, "max_validation_per_intent": 1, "max_length": 24},
        "lora": {"r": 4, "alpha": 8, "layers": 1},
        "head": {"exit_layer": 2, "pooling": "mean"},
        "optim": {"epochs": 1, "batch_size": 32, "lr": 2e-3, "head_lr": 2e-2},
    }
    for key, value in parts.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    return ensure_base_model()


@pytest.fixture(scope="session")
def versions() -> tuple[AdapterRef, AdapterRef]:
    """The two versions in ``intent_registry``."""
    return V1, V2


@pytest.fixture(scope="session")
def intent_registry(tmp_path_factory: pytest.TempPathFactory, base_model_dir: Path) -> AdapterRegistry:
    from finserve.training.config import TrainConfig
    from finserve.training.job import run_job

    registry = AdapterRegistry(tmp_path_factory.mktemp("intent") / "registry")
    v1 = _config(V1, optim={"seed": 1})
    v2 = _config(
        V2,
        data={"max_train_per_intent": 3, "seed": 5},
        head={"exit_layer": 3, "pooling": "mean_last", "query_embedding": True},
        optim={"seed": 2, "epochs": 2},
    )
    v3 = _config(
        V3, optim={"seed": 3}, encoder={"enabled": True, "train_layers": 1, "epochs": 1, "weight": 0.5}
    )
    for cfg in (v1, v2, v3):
        run_job(TrainConfig.model_validate(cfg), registry, base_model_path=base_model_dir, progress=False)
    return registry
