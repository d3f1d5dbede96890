"""A real (tiny) training run: a loadable PEFT adapter, a valid manifest, served == measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from finserve.contracts import AdapterRef, AdapterRegistry
from finserve.serving.inference.base_model import BASE_MODEL_ID
from finserve.serving.intent.head import has_head, load_head
from finserve.serving.paths import banking77_csv
from finserve.training.data import DATA_ATTRIBUTION, load_splits, read_eval_csv

pytestmark = pytest.mark.slow
REF = AdapterRef(name="tiny-intent", version="0.1.0")


def test_training_publishes_a_verified_version_with_a_complete_manifest(
    trained_registry: AdapterRegistry,
) -> None:
    manifest = trained_registry.verify(REF)
    assert manifest.base_model == BASE_MODEL_ID
    assert len(manifest.checksum) == 64
    assert {
        "adapter_config.json",
        "adapter_model.safetensors",
        "intent_head.safetensors",
        "labels.json",
        "intent_head.json",
        "README.md",
        "adapter.gguf",
    } <= set(manifest.files)  # adapter.gguf: llama.cpp
    assert manifest.data_checksum == load_splits(banking77_csv()).checksum
    assert manifest.training["config"]["lora"]["layers"] == 1
    assert manifest.training["train_rows"] == 77 * 2 and manifest.training["validation_rows"] == 77
    assert manifest.training["quantization"] == "none"
    assert 0.0 <= manifest.metrics["accuracy"] <= 1.0 and 0.0 <= manifest.metrics["macro_f1"] <= 1.0
    assert "CC BY 4.0" in manifest.description and DATA_ATTRIBUTION in manifest.description
    assert manifest.created_at.tzinfo is not None


def test_split_files_are_written_for_eval(trained_registry: AdapterRegistry) -> None:
    split = Path(trained_registry.root).parent / "split"
    train, val = read_eval_csv(split / "train.csv"), read_eval_csv(split / "validation.csv")
    assert len(train) + len(val) == 10003 and not set(train) & set(val)


def test_adapter_loads_with_peft_on_the_full_causal_lm(
    trained_registry: AdapterRegistry, base_model_dir: Path
) -> None:
    """The folder is a plain PEFT LoRA for the whole model: every saved tensor lands on a module."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    _, folder = trained_registry.fetch(REF)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == BASE_MODEL_ID
    assert config["layers_to_transform"] == [1]
    assert config["target_modules"] == sorted(config["target_modules"])  # same run, same bytes, same checksum
    saved = load_file(str(folder / "adapter_model.safetensors"))
    assert saved and all(".layers.1." in key for key in saved)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base_model_dir)), str(folder))
    loaded = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    for key, tensor in saved.items():
        match = [v for k, v in loaded.items() if k.replace(".default", "") == key]
        assert len(match) == 1, key
        assert torch.equal(match[0], tensor)
    # Training moved lora_B off its zero init, so the adapter changes the model.
    assert any(t.abs().sum() > 0 for k, t in saved.items() if "lora_B" in k)


def test_head_files_describe_the_trained_head(trained_registry: AdapterRegistry) -> None:
    _, folder = trained_registry.fetch(REF)
    assert has_head(folder)
    spec, head, labels = load_head(folder)
    assert spec.exit_layer == 2 and spec.lora_layers == [1] and spec.pooling == "mean"
    assert len(labels) == 77 and labels == sorted(labels)
    assert head.linear.weight.shape == (77, spec.hidden_size)
