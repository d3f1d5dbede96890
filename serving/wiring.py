"""Builders that connect stages to the shared models they use but do not own.

The intent classifier runs on the generator's base LLM and on retrieval's sentence embedder; the
stages stay independent of each other (pyproject.toml's import-linter contracts), so the folders
and the embedder reach it from here. Nothing heavy loads on import: each piece loads when called.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from finserve.contracts import AdapterRegistry

from .inference.base_model import ensure_base_model
from .intent import IntentConfig
from .intent.assets import IntentAssets
from .retrieval.embedder import Embedder, default_model_path, model_fingerprint

if TYPE_CHECKING:
    from .inference.engine import Engine
    from .intent.classifier import IntentClassifier

log = logging.getLogger(__name__)


def intent_assets() -> IntentAssets:
    """The base model folder and sentence embedder the generator and retrieval use."""
    return IntentAssets(
        base_model=ensure_base_model,
        embedder=Embedder,
        default_embedder_path=default_model_path,
        fingerprint=model_fingerprint,
    )


def build_intent_classifier(
    config: IntentConfig, registry: AdapterRegistry | None = None
) -> IntentClassifier:
    """The intent classifier as the serving graph, evaluation and training run it (torch loads here)."""
    from .intent.classifier import IntentClassifier

    return IntentClassifier(config, registry, intent_assets())


def share_engine_model(intent: IntentClassifier, engine: Engine) -> None:
    """Once ``engine`` has started: let the intent heads read its model instead of a float32 copy of their own
    (``intent.backbone`` auto or engine; backbone.py says why). The CPU engine's runner does it when it runs
    the lean forward; vLLM, llama.cpp, remote and failover engines keep no model the heads can read.
    Raises ValueError for ``intent.backbone: engine`` when the engine cannot."""
    from .intent.backbone import EngineBackbone

    choice = intent.config.backbone
    if choice == "transformers" or isinstance(intent.backbone, EngineBackbone):
        return
    runner = getattr(engine, "runner", None)
    if runner is not None and runner.runs_states:
        intent.use_backbone(EngineBackbone(lambda: runner))
        return
    if choice == "engine":
        raise ValueError(
            "intent.backbone is engine, but the engine's model cannot run the heads: that needs the CPU engine "
            "(generator.engine: transformers) with the lean forward and a Llama model; use auto or transformers"
        )
    log.info("intent heads load a float32 copy of the base model: the engine's model is out of their reach")
