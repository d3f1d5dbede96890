"""QLoRA on CUDA: the same job loads the base in 4-bit NF4 (double quantization) and trains LoRA on top.

Opt-in: `pytest -m gpu` on a machine with CUDA and bitsandbytes (`pip install -e '.[gpu]'`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("bitsandbytes")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")


def _config(version: str, quantization: str) -> dict:
    return {
        "name": "qlora-tiny",
        "version": version,
        "quantization": quantization,
        "device": "cuda",
        "data": {"max_train_per_intent": 4, "max_validation_per_intent": 2, "max_length": 32},
        "lora": {"r": 8, "alpha": 16, "layers": 2},
        "head": {"exit_layer": 4},
        "optim": {"epochs": 2, "batch_size": 32, "lr": 2e-3, "head_lr": 2e-2},
    }


def test_auto_quantizes_to_nf4_with_double_quantization_on_cuda(cuda: None) -> None:
    import bitsandbytes as bnb

    from finserve.serving.inference.base_model import ensure_base_model
    from finserve.training.config import TrainConfig
    from finserve.training.model import load_base

    base = load_base(TrainConfig.model_validate(_config("0.0.1", "auto")), ensure_base_model())
    assert base.quantized and base.device == "cuda"
    linear4 = [m for m in base.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linear4, "no 4-bit linear layers: the base was not quantized"
    state = linear4[0].weight.quant_state
    assert state.quant_type == "nf4"
    assert state.nested, "double quantization (nested quant state) is off"
    trainable = [n for n, p in base.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_qlora_job_publishes_a_plain_lora_that_serves_on_the_fp32_base(cuda: None, tmp_path: Path) -> None:
    from finserve.contracts import AdapterRef, AdapterRegistry
    from finserve.serving.intent import IntentConfig
    from finserve.serving.wiring import build_intent_classifier
    from finserve.training.config import TrainConfig
    from finserve.training.job import run_job

    registry = AdapterRegistry(tmp_path / "registry")
    result = run_job(TrainConfig.model_validate(_config("1.0.0", "nf4")), registry, progress=False)
    assert result.manifest.training["quantization"] == "nf4"
    registry.verify(result.manifest.ref)
    clf = build_intent_classifier(IntentConfig(device="cpu"), registry)
    probs = clf.probabilities(AdapterRef(name="qlora-tiny", version="1.0.0"), ["where is my card?"])
    assert abs(sum(probs[0]) - 1.0) < 1e-4
