"""The fine-tuned sentence encoder an adapter version carries: file format, exact forward, served blend."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from finserve.contracts import AdapterCorrupt, AdapterRef, AdapterRegistry
from finserve.serving.intent import IntentConfig
from finserve.serving.intent.classifier import HeadScores, decide
from finserve.serving.intent.sentence_encoder import (
    ENCODER_WEIGHTS,
    EncoderSpec,
    load_base_encoder,
    load_encoder,
    read_spec,
)
from finserve.serving.intent.vote import blend
from finserve.serving.retrieval.embedder import default_model_path, model_fingerprint
from finserve.serving.wiring import build_intent_classifier

pytestmark = pytest.mark.slow
V1 = AdapterRef(name="tiny-intent", version="1.0.0")
V3 = AdapterRef(name="tiny-intent", version="3.0.0")  # the conftest's version with an encoder
TEXTS = [
    "I am still waiting on my card?",
    "What is the exchange rate for euros?",
    "My card was stolen yesterday",
]


@pytest.mark.parametrize("first_trained", [0, 4, 6])
def test_cached_prefix_and_upper_layers_equal_the_models_own_forward(first_trained: int) -> None:
    """Training caches the states below the trained layers; that split must not change the vector."""
    model = load_base_encoder(default_model_path(), n_labels=5, max_length=64).eval()
    batch = model.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.bert(**batch).last_hidden_state
        weights = batch["attention_mask"].unsqueeze(-1).float()
        want = model.head((hidden * weights).sum(1) / weights.sum(1))
        got = model.logits_from(model.prefix(TEXTS, first_trained), first_trained)
    assert torch.allclose(got, want, atol=1e-4)


def test_a_version_stores_only_its_trained_layers_and_head(intent_registry: AdapterRegistry) -> None:
    from safetensors import safe_open

    _, folder = intent_registry.fetch(V3)
    spec = read_spec(folder)
    assert spec.trained_layers == [5] and spec.weight == 0.5
    assert spec.base == model_fingerprint(default_model_path())
    with safe_open(str(folder / ENCODER_WEIGHTS), framework="pt") as fh:
        keys = set(fh.keys())
    assert {"head.weight", "head.bias"} <= keys
    assert {k.split(".")[2] for k in keys if k.startswith("encoder.")} == {"5"}
    facts = intent_registry.manifest(V3).training["encoder"]  # the manifest reports the encoder on its own
    assert facts["trained_layers"] == [5] and facts["base"] == spec.base
    assert 0.0 <= facts["accuracy"] <= 1.0 and len(facts["epochs"]) == 1


def test_loading_overlays_the_stored_layers_on_the_base(intent_registry: AdapterRegistry) -> None:
    _, folder = intent_registry.fetch(V3)
    spec, tuned = load_encoder(folder, default_model_path(), 77)
    base = load_base_encoder(default_model_path(), 77, spec.max_length)
    frozen, trained = tuned.layers[4].output.dense.weight, tuned.layers[5].output.dense.weight
    assert torch.equal(frozen, base.layers[4].output.dense.weight)
    assert not torch.equal(trained, base.layers[5].output.dense.weight)


def test_served_modules_compute_what_transformers_bert_does(intent_registry: AdapterRegistry) -> None:
    """Serving runs our BERT modules and tokenizers (bert.py); training, transformers' BertModel and tokenizer. The
    same version through both: the same token ids (an empty text, one longer than max_length, accents and
    punctuation included) and the same probabilities."""
    from safetensors.torch import load_file

    from finserve.serving.intent.bert import BatchTokenizer, BertEncoder

    texts = [*TEXTS, "", "please " * 90 + "top up", "Ünïcode çafé: why was my £20 top-up REVERTED?!"]
    _, folder = intent_registry.fetch(V3)
    spec, ours = load_encoder(folder, default_model_path(), 77)
    assert isinstance(ours.bert, BertEncoder) and isinstance(ours.tokenizer, BatchTokenizer)
    reference = load_base_encoder(default_model_path(), 77, spec.max_length)
    tensors = load_file(str(folder / ENCODER_WEIGHTS))
    reference.bert.load_state_dict(
        {k: v for k, v in tensors.items() if k.startswith("encoder.")}, strict=False
    )
    reference.head.load_state_dict(
        {k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")}
    )
    want_ids = reference.tokenizer(
        texts, padding=True, truncation=True, max_length=spec.max_length, return_tensors="pt"
    )
    got_ids = ours.tokenizer(texts)
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(got_ids[name], want_ids[name]), name
    assert got_ids["input_ids"].shape[1] == spec.max_length
    assert torch.allclose(ours.probabilities(texts), reference.eval().probabilities(texts), atol=1e-5)


def test_versions_share_the_base_encoders_frozen_layers(intent_registry: AdapterRegistry) -> None:
    """Two versions loaded side by side (a canary) hold one copy of the layers they did not train; loading a
    version's trained layers never changes the shared base."""
    from finserve.serving.intent.sentence_encoder import shared_base

    _, folder = intent_registry.fetch(V3)
    _, one = load_encoder(folder, default_model_path(), 77)
    _, two = load_encoder(folder, default_model_path(), 77)
    base = shared_base(default_model_path())
    assert one.bert.embeddings is two.bert.embeddings is base.embeddings
    assert all(one.layers[i] is two.layers[i] is base.encoder.layer[i] for i in range(5))
    assert one.layers[5] is not two.layers[5]
    assert torch.equal(one.layers[5].output.dense.weight, two.layers[5].output.dense.weight)
    assert not torch.equal(one.layers[5].output.dense.weight, base.encoder.layer[5].output.dense.weight)
    assert torch.allclose(one.probabilities(TEXTS), two.probabilities(TEXTS))


def test_a_weights_file_that_does_not_match_the_spec_is_refused(
    intent_registry: AdapterRegistry, tmp_path: Path
) -> None:
    _, folder = intent_registry.fetch(V3)
    copy = tmp_path / "v3"
    shutil.copytree(folder, copy)
    spec = read_spec(copy)
    wider = spec.model_copy(update={"trained_layers": [4, 5]})  # claims a layer the file does not carry
    (copy / "intent_encoder.json").write_text(wider.model_dump_json(), encoding="utf-8")
    with pytest.raises(ValueError, match="do not match"):
        load_encoder(copy, default_model_path(), 77)


def test_spec_accepts_only_top_layers() -> None:
    EncoderSpec(base="x", layers=6, trained_layers=[3, 4, 5], max_length=64, weight=0.3)
    with pytest.raises(ValueError, match="top layers"):
        EncoderSpec(base="x", layers=6, trained_layers=[2, 3], max_length=64, weight=0.3)


def test_a_tampered_encoder_file_fails_verification(intent_registry: AdapterRegistry, tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "registry")
    shutil.copytree(intent_registry.root, registry.root)
    _, folder = registry.fetch(V3)
    target = folder / ENCODER_WEIGHTS
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(AdapterCorrupt):
        registry.fetch(V3)


def test_served_probabilities_blend_the_llm_head_and_the_encoder(
    intent_registry: AdapterRegistry, base_model_dir: Path
) -> None:
    clf = build_intent_classifier(
        IntentConfig(base_model_path=str(base_model_dir), device="cpu"), intent_registry
    )
    served = torch.tensor(clf.probabilities(V3, TEXTS))
    loaded = clf._ensure(V3)
    assert loaded is not None and loaded.encoder is not None
    head_only = torch.tensor(clf._head_probabilities(dataclasses.replace(loaded, encoder=None), TEXTS))
    _, folder = intent_registry.fetch(V3)
    _, tuned = load_encoder(folder, default_model_path(), 77)
    want = blend(head_only, tuned.probabilities(TEXTS), loaded.spec.retrieval_weight, 0.5)
    assert torch.allclose(served, want, atol=1e-5)
    assert not torch.allclose(served, head_only, atol=1e-3)
    assert torch.allclose(served.sum(-1), torch.ones(len(TEXTS)), atol=1e-5)


async def test_prediction_names_the_encoder(intent_registry: AdapterRegistry, base_model_dir: Path) -> None:
    clf = build_intent_classifier(
        IntentConfig(base_model_path=str(base_model_dir), device="cpu"), intent_registry
    )
    scores = await clf.head_scores(TEXTS[0], V3)
    assert scores is not None and scores.encoder
    assert decide(scores, [], 0.05).method == "head+encoder"
    mixed = decide(
        HeadScores(
            probabilities=scores.probabilities, retrieval_weight=0.3, vote_temperature=0.05, encoder=True
        ),
        [_Hit("card_arrival", 0.9)],
        0.05,
    )
    assert mixed.method == "head+encoder+vote"
    assert (await clf.head_scores(TEXTS[0], V1)).encoder is False  # type: ignore[union-attr]


async def test_an_encoder_trained_from_other_weights_is_refused(
    intent_registry: AdapterRegistry, base_model_dir: Path, tmp_path: Path
) -> None:
    from finserve.serving.inference.errors import AdapterIncompatible

    other = tmp_path / "other-encoder"
    shutil.copytree(default_model_path(), other)
    (other / "NOTICE.local").write_text("local copy\n")  # same architecture, another fingerprint
    clf = build_intent_classifier(
        IntentConfig(
            base_model_path=str(base_model_dir),
            device="cpu",
            embedder_path=str(other),
            embedder_backend="torch",
        ),
        intent_registry,
    )
    with pytest.raises(AdapterIncompatible, match="fine-tuned encoder"):
        await clf.head_scores(TEXTS[0], V3)
    assert (
        await clf.classify(TEXTS[0], V1, [])
    ).method == "head"  # versions without an encoder are unaffected


@dataclasses.dataclass
class _Hit:
    intent: str
    score: float
