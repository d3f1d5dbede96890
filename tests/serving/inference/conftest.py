"""Generator fixtures: the real SmolLM2 weights and tiny real LoRA adapters in a temp registry."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from finserve.contracts import AdapterManifest, AdapterRegistry
from finserve.serving.inference.base_model import BASE_MODEL_ID, ensure_base_model

# name@version -> seed of its random LoRA B weights
ADAPTERS = {"tiny@1.0.0": 1, "tiny@2.0.0": 2, "spare@1.0.0": 3, "spare@2.0.0": 4}
FOREIGN = "foreign@1.0.0"  # trained on another base model


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The converted model (converted once per data dir, then cached)."""
    return ensure_base_model()


def make_lora(base: object, out: Path, seed: int, std: float = 0.15) -> Path:
    """A real PEFT LoRA (q_proj, v_proj, r=8) with random non-zero B, so it changes the output.

    A and B both come from ``seed``, so every run builds the same adapter.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        copy.deepcopy(base),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0),
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                scale = std if "lora_B" in name else 0.03
                param.copy_(torch.randn(param.shape, generator=gen) * scale)
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def lora_registry(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> AdapterRegistry:
    """A registry holding two versions of ``tiny``, two of ``spare`` and one foreign adapter."""
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(model_dir))
    work = tmp_path_factory.mktemp("adapters")
    registry = AdapterRegistry(work / "registry")
    for ref, seed in {**ADAPTERS, FOREIGN: 5}.items():
        name, version = ref.split("@")
        folder = make_lora(base, work / ref, seed)
        base_model = "example-org/another-model" if ref == FOREIGN else BASE_MODEL_ID
        registry.publish(
            folder, AdapterManifest(name=name, version=version, base_model=base_model, checksum="")
        )
    return registry
