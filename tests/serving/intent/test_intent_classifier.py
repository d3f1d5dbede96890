"""The served classifier: versions side by side, each request answered by its own version."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from finserve.contracts import AdapterNotFound, AdapterRef, AdapterRegistry
from finserve.serving.intent import IntentClassifier, IntentConfig
from finserve.serving.paths import banking77_csv
from finserve.serving.wiring import build_intent_classifier
from finserve.training.data import load_splits
from finserve.training.metrics import accuracy

pytestmark = pytest.mark.slow
V1 = AdapterRef(name="tiny-intent", version="1.0.0")  # the versions the conftest trains
V2 = AdapterRef(name="tiny-intent", version="2.0.0")
V3 = AdapterRef(name="tiny-intent", version="3.0.0")  # ships a fine-tuned encoder

TEXTS = [
    "I am still waiting on my card?",
    "What is the exchange rate for euros?",
    "My card was stolen yesterday",
    "Why was I charged a fee for my card payment?",
    "How do I activate my new card?",
    "The transfer has not reached my friend",
]


@dataclass
class Hit:
    intent: str
    score: float
    text: str = ""


def classifier(registry: AdapterRegistry, base: Path, **kw: object) -> IntentClassifier:
    return build_intent_classifier(IntentConfig(base_model_path=str(base), device="cpu", **kw), registry)


@pytest.fixture(scope="module")
def clf(
    intent_registry: AdapterRegistry, base_model_dir: Path, versions: tuple[AdapterRef, AdapterRef]
) -> IntentClassifier:
    assert versions == (V1, V2)
    c = classifier(intent_registry, base_model_dir)
    c.preload([V1, V2])
    return c


def test_two_versions_give_different_probabilities(clf: IntentClassifier) -> None:
    p1, p2 = torch.tensor(clf.probabilities(V1, TEXTS)), torch.tensor(clf.probabilities(V2, TEXTS))
    assert p1.shape == p2.shape == (len(TEXTS), 77)
    assert torch.allclose(p1.sum(-1), torch.ones(len(TEXTS)), atol=1e-5)
    assert not torch.allclose(p1, p2, atol=1e-3)


async def test_interleaved_requests_each_get_their_own_version(clf: IntentClassifier) -> None:
    # Alone, one version at a time: the reference answers.
    alone = {ref: [await clf.classify(t, ref, []) for t in TEXTS] for ref in (V1, V2)}
    assert [p.confidence for p in alone[V1]] != [p.confidence for p in alone[V2]]
    # Together: every request concurrently, versions alternating.
    jobs = [(ref, i) for i in range(len(TEXTS)) for ref in (V1, V2)] * 2
    together = await asyncio.gather(*(clf.classify(TEXTS[i], ref, []) for ref, i in jobs))
    for (ref, i), got in zip(jobs, together, strict=True):
        want = alone[ref][i]
        assert got.method == "head"
        assert got.label == want.label
        assert got.confidence == pytest.approx(want.confidence, abs=1e-5)


def test_served_accuracy_equals_what_training_measured(
    clf: IntentClassifier, intent_registry: AdapterRegistry
) -> None:
    """The trainer's cached-prefix forwards and the classifier's one-call forwards agree (3.0.0: with its encoder)."""
    for ref in (V1, V2, V3):
        manifest = intent_registry.manifest(ref)
        cfg = manifest.training["config"]["data"]
        val = load_splits(
            banking77_csv(), cfg["max_train_per_intent"], cfg["max_validation_per_intent"], cfg["seed"]
        )
        labels = clf.labels(ref)
        probs = clf.probabilities(ref, [t for t, _ in val.validation])
        predicted = [labels[max(range(len(p)), key=p.__getitem__)] for p in probs]
        served = accuracy([c for _, c in val.validation], predicted)
        assert served == pytest.approx(manifest.metrics["accuracy"], abs=1.5 / len(val.validation))


async def test_base_adapter_uses_the_retrieval_vote(clf: IntentClassifier) -> None:
    hits = [Hit("card_arrival", 0.9), Hit("lost_or_stolen_card", 0.7), Hit("lost_or_stolen_card", 0.69)]
    pred = await clf.classify("where is my card", AdapterRef.base(), hits)
    assert (pred.label, pred.method) == ("card_arrival", "vote")
    assert 0.5 < pred.confidence <= 1.0
    empty = await clf.classify("where is my card", AdapterRef.base(), [])
    assert empty.label == "unknown" and empty.confidence == 0.0


async def test_vote_method_ignores_the_adapter(
    intent_registry: AdapterRegistry, base_model_dir: Path
) -> None:
    c = classifier(intent_registry, base_model_dir, method="vote")
    pred = await c.classify("anything", V1, [Hit("exchange_rate", 0.5)])
    assert (pred.label, pred.method) == ("exchange_rate", "vote")


async def test_unknown_version_is_an_error_not_a_silent_fallback(clf: IntentClassifier) -> None:
    with pytest.raises(AdapterNotFound):
        await clf.classify("hi", AdapterRef(name="tiny-intent", version="9.9.9"), [Hit("exchange_rate", 0.5)])


async def test_adapter_without_a_head_falls_back_to_the_vote(
    intent_registry: AdapterRegistry, base_model_dir: Path, tmp_path: Path
) -> None:
    """A generation-only LoRA (no intent_head.*) still serves: intent comes from retrieval."""
    from finserve.contracts import AdapterManifest

    _, folder = intent_registry.fetch(V1)
    lora_only = tmp_path / "lora"
    lora_only.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(folder / name, lora_only / name)
    registry = AdapterRegistry(tmp_path / "registry")
    manifest = intent_registry.manifest(V1).model_copy(update={"name": "gen-only"})
    registry.publish(lora_only, AdapterManifest.model_validate(manifest.model_dump()))
    c = classifier(registry, base_model_dir)
    pred = await c.classify("x", AdapterRef(name="gen-only", version="1.0.0"), [Hit("exchange_rate", 0.5)])
    assert (pred.label, pred.method) == ("exchange_rate", "vote")


async def test_least_recently_used_versions_are_unloaded(
    intent_registry: AdapterRegistry, base_model_dir: Path
) -> None:
    c = classifier(intent_registry, base_model_dir, max_loaded_adapters=1)
    first = await c.classify(TEXTS[0], V1, [])
    await c.classify(TEXTS[0], V2, [])
    assert list(c._loaded) == [V2]
    again = await c.classify(TEXTS[0], V1, [])  # reloaded from the registry, same answer
    assert (again.label, again.confidence) == (first.label, pytest.approx(first.confidence, abs=1e-5))


def test_a_head_reading_query_embeddings_records_its_embedder(intent_registry: AdapterRegistry) -> None:
    from finserve.serving.intent.head import load_head
    from finserve.serving.retrieval.embedder import default_model_path, model_fingerprint

    _, folder = intent_registry.fetch(V2)
    spec, head, _ = load_head(folder)
    assert spec.query_embedding is not None
    assert spec.query_embedding.embedder == model_fingerprint(default_model_path())
    assert head.linear.in_features == spec.hidden_size * 2 + spec.query_embedding.dim
    # Training moved the query columns: the embedding is an input the head really uses.
    assert head.linear.weight[:, -spec.query_embedding.dim :].abs().sum() > 0


async def test_a_head_trained_on_another_embedder_is_refused(
    intent_registry: AdapterRegistry, base_model_dir: Path, tmp_path: Path
) -> None:
    """Same architecture, other weights (one changed file): the fingerprint differs, so the version is refused."""
    from finserve.serving.inference.errors import AdapterIncompatible
    from finserve.serving.retrieval.embedder import default_model_path

    other = tmp_path / "other-embedder"
    shutil.copytree(default_model_path(), other)
    readme = other / "README.md"
    readme.write_text(readme.read_text() + "\nlocal copy\n" if readme.exists() else "local copy\n")
    c = classifier(intent_registry, base_model_dir, embedder_path=str(other), embedder_backend="torch")
    with pytest.raises(AdapterIncompatible, match="embedder_path"):
        await c.classify(TEXTS[0], V2, [])
    assert (
        await c.classify(TEXTS[0], V1, [])
    ).method == "head"  # heads without the query input are unaffected
