"""Tuning the generator for answers: a real (short) SFT run on serving's own prompts.

The run takes the intent parts of the tiny trained version (``intent_from``) and tunes a LoRA on the
top layers on one row per intent, with prompts built by the in-process pipeline over a small real
Milvus Lite index. It must move the model towards the curated answers on rows it never trained on.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from kbutil import banking77_rows, build_index
from tiny_configs import write_config

from finserve.contracts import AdapterRef, AdapterRegistry
from finserve.serving.intent.head import INTENT_LORA_DIR, intent_lora_folder
from finserve.training.model import cpu_has_bf16

pytestmark = pytest.mark.slow
SOURCE = AdapterRef(name="tiny-intent", version="0.1.0")
TUNED = AdapterRef(name="tiny-intent", version="0.2.0")
FIRST_LAYER = 27


@pytest.fixture(scope="module")
def serving_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("answers-kb")
    index = build_index(
        work / "kb.db", banking77_rows(["card_arrival", "pin_blocked", "lost_or_stolen_card"], 3)
    )
    path = work / "serving.yaml"
    path.write_text(
        yaml.safe_dump({"retrieval": {"milvus_uri": str(index), "redis_url": None}}), encoding="utf-8"
    )
    return path


@pytest.fixture(scope="module")
def registry(trained_registry: AdapterRegistry, tmp_path_factory: pytest.TempPathFactory) -> AdapterRegistry:
    """A copy of the session's tiny registry (other tests count its versions)."""
    import shutil

    root = tmp_path_factory.mktemp("answers-registry") / "registry"
    shutil.copytree(trained_registry.root, root)
    return AdapterRegistry(root)


@pytest.fixture(scope="module")
def tuned(registry: AdapterRegistry, serving_yaml: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from typer.testing import CliRunner

    from finserve.cli import app

    work = tmp_path_factory.mktemp("answers")
    config = write_config(
        work / "answers.yaml",
        {
            "name": TUNED.name,
            "version": TUNED.version,
            "quantization": "none",
            "device": "cpu",
            "intent_from": str(SOURCE),
            "lora": {"r": 4, "alpha": 8},
            "answers": {
                "enabled": True,
                "per_intent": 1,
                "dev_per_intent": 1,
                "first_layer": FIRST_LAYER,
                "epochs": 2,
                "batch_size": 8,
                "lr": 2e-3,
                "serving_config": str(serving_yaml),
            },
        },
    )
    result = CliRunner().invoke(
        app, ["train", "--config", str(config), "--registry", str(registry.root), "--json"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{") :])


def test_tuning_lowers_the_loss_on_curated_answers_of_rows_it_never_saw(
    tuned: dict, registry: AdapterRegistry
) -> None:
    facts = registry.verify(TUNED).training["answers"]
    assert facts["examples"] == 77 and facts["dev_examples"] == 77
    assert facts["base_dev_loss"] is not None and len(facts["epochs"]) == 2
    # The dev rows are other questions than the training rows: a lower loss there means the adapter moved the
    # model towards the curated answers in general, not towards 77 memorised prompts.
    assert facts["epochs"][-1]["dev_loss"] < 0.9 * facts["base_dev_loss"]
    assert 200 < facts["prompt_tokens_mean"] < 500  # system prompt + three knowledge entries + the question
    # precision auto: bfloat16 autocast where this CPU multiplies it natively, float32 elsewhere; recorded.
    assert facts["compute_dtype"] == ("bfloat16" if cpu_has_bf16() else "float32")


def test_the_version_keeps_the_source_intent_parts_byte_for_byte(
    tuned: dict, registry: AdapterRegistry
) -> None:
    manifest = registry.verify(TUNED)
    source_manifest, source = registry.fetch(SOURCE)
    _, folder = registry.fetch(TUNED)
    assert manifest.training["intent_from"]["ref"] == str(SOURCE)
    assert manifest.metrics == source_manifest.metrics  # the served intent reads only the copied parts
    for name in ("intent_head.safetensors", "intent_head.json", "labels.json"):
        assert (folder / name).read_bytes() == (source / name).read_bytes()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (folder / INTENT_LORA_DIR / name).read_bytes() == (source / name).read_bytes()
    assert intent_lora_folder(folder) == folder / INTENT_LORA_DIR and intent_lora_folder(source) == source


def test_the_top_level_lora_is_the_generators_on_the_upper_layers(
    tuned: dict, registry: AdapterRegistry, base_model_dir: Path
) -> None:
    from safetensors.torch import load_file

    _, folder = registry.fetch(TUNED)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["layers_to_transform"] == list(range(FIRST_LAYER, 30))
    saved = load_file(str(folder / "adapter_model.safetensors"))
    assert saved and all(any(f".layers.{i}." in key for i in range(FIRST_LAYER, 30)) for key in saved)


def test_the_served_intent_of_the_tuned_version_is_the_sources(
    tuned: dict, registry: AdapterRegistry
) -> None:
    from finserve.serving.intent.config import IntentConfig
    from finserve.serving.wiring import build_intent_classifier

    classifier = build_intent_classifier(IntentConfig(), registry)

    async def scores(ref: AdapterRef) -> dict[str, float]:
        head = await classifier.head_scores("my new card has still not arrived", ref)
        assert head is not None
        return head.probabilities

    before, after = asyncio.run(scores(SOURCE)), asyncio.run(scores(TUNED))
    assert before.keys() == after.keys()
    assert all(abs(before[k] - after[k]) < 1e-5 for k in before)
