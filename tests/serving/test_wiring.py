"""serving/wiring.py hands the intent stage the models it shares with the generator and retrieval, so the
intent package imports neither (the import contracts in pyproject.toml check that side)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from finserve.contracts import AdapterRef
from finserve.serving.inference.base_model import ensure_base_model
from finserve.serving.intent import IntentClassifier, IntentConfig
from finserve.serving.retrieval.embedder import Embedder, default_model_path, model_fingerprint
from finserve.serving.wiring import build_intent_classifier, intent_assets


@dataclass
class Hit:
    intent: str
    score: float


def test_the_assets_are_the_generators_base_model_and_retrievals_embedder() -> None:
    assets = intent_assets()
    assert assets.base_model is ensure_base_model
    assert assets.embedder is Embedder
    assert assets.default_embedder_path is default_model_path
    assert assets.fingerprint is model_fingerprint


def test_a_built_classifier_votes_without_loading_a_model() -> None:
    clf = build_intent_classifier(IntentConfig(method="vote"))
    examples = [Hit("card_arrival", 0.9), Hit("card_arrival", 0.8), Hit("exchange_rate", 0.3)]
    prediction = asyncio.run(
        clf.classify("where is my card", AdapterRef(name="banking77", version="1.0.0"), examples)
    )
    assert (prediction.label, prediction.method) == ("card_arrival", "vote")


def test_a_classifier_without_assets_says_how_to_build_one() -> None:
    clf = IntentClassifier(IntentConfig())
    with pytest.raises(RuntimeError, match="build_intent_classifier"):
        clf._need_assets()
