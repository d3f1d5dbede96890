"""Builders that connect stages to the shared models they use but do not own.

The intent classifier runs on the generator's base LLM and on retrieval's sentence embedder; the
stages stay independent of each other (pyproject.toml's import-linter contracts), so the folders
and the embedder reach it from here. Nothing heavy loads on import: each piece loads when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from finserve.contracts import AdapterRegistry

from .inference.base_model import ensure_base_model
from .intent import IntentConfig
from .intent.assets import IntentAssets

if TYPE_CHECKING:
    from .intent.classifier import IntentClassifier
from .retrieval.embedder import Embedder, default_model_path, model_fingerprint


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
