"""Training configs: strict validation, and every shipped YAML parses."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from finserve.training.config import AnswerSettings, TrainConfig
from finserve.training.demo import CONFIG_DIR, DEMO_CONFIGS
from finserve.training.model import cpu_has_bf16, resolve_precision, resolve_quantization

SHIPPED = sorted(CONFIG_DIR.glob("*.yaml"))


def test_lora_sits_right_below_the_exit_layer() -> None:
    cfg = TrainConfig.model_validate(
        {"name": "x", "version": "1.0.0", "head": {"exit_layer": 12}, "lora": {"layers": 3}}
    )
    assert cfg.lora_layer_ids == [9, 10, 11]
    assert str(cfg.ref) == "x@1.0.0"


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "x", "version": "1.0.0", "lora": {"layers": 5}, "head": {"exit_layer": 4}},
        {"name": "x", "version": "1.0", "head": {"exit_layer": 4}},
        {"name": "Bad Name", "version": "1.0.0"},
        {"name": "x", "version": "1.0.0", "optim": {"epoch": 3}},  # typo: unknown key
        {"name": "x", "version": "1.0.0", "quantization": "int8"},
        {"name": "x", "version": "1.0.0", "head": {"weight_from_dev": True}},  # no dev split to choose on
        # vote 0.5 + encoder 0.6: the LLM head's share would be negative
        {
            "name": "x",
            "version": "1.0.0",
            "head": {"retrieval_weight": 0.5},
            "encoder": {"enabled": True, "weight": 0.6},
        },
        {"name": "x", "version": "1.0.0", "encoder": {"enabled": True, "layers": 2}},  # typo: train_layers
        {"name": "x", "version": "1.0.0", "intent_from": "x@0.9.0"},  # a copy: nothing would be trained
        {"name": "x", "version": "1.0.0", "intent_from": "not a ref", "answers": {"enabled": True}},
        {"name": "x", "version": "1.0.0", "answers": {"enabled": True, "first_layer": 0}},
    ],
)
def test_invalid_configs_are_rejected(bad: dict) -> None:
    with pytest.raises(ValidationError):
        TrainConfig.model_validate(bad)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_configs_parse(path: Path) -> None:
    cfg = TrainConfig.from_file(path)
    assert cfg.head.exit_layer <= 30  # SmolLM2-135M has 30 decoder layers


def test_demo_versions_are_three_different_versions_of_one_adapter() -> None:
    configs = [TrainConfig.from_file(p) for p in DEMO_CONFIGS]
    assert len({c.name for c in configs}) == 1
    assert len({c.version for c in configs}) == 3
    assert configs[0].model_dump(exclude={"version", "description"}) != configs[1].model_dump(
        exclude={"version", "description"}
    )
    # The demo builds each version after the one it takes its intent parts from.
    built: list[str] = []
    for c in configs:
        assert c.intent_from is None or c.intent_from in built
        built.append(str(c.ref))


def test_the_quick_default_is_the_default_recipe_on_published_intent_parts() -> None:
    """answers.yaml (what `make adapters` runs) and default.yaml (one job from scratch) publish the same version
    with the same answer tuning; answers.yaml takes the intent parts from the version intent.yaml publishes."""
    default = TrainConfig.from_file(CONFIG_DIR / "default.yaml")
    quick = TrainConfig.from_file(CONFIG_DIR / "answers.yaml")
    intent = TrainConfig.from_file(CONFIG_DIR / "intent.yaml")
    assert default.ref == quick.ref and quick.intent_from == str(intent.ref)
    assert default.answers == quick.answers and default.lora == quick.lora
    assert default.model_dump(exclude={"name", "version", "description", "answers"}) == intent.model_dump(
        exclude={"name", "version", "description", "answers"}
    )
    assert default.answers.enabled and not intent.answers.enabled


def test_quantization_choice() -> None:
    assert resolve_quantization("auto", "cuda") is True
    assert resolve_quantization("auto", "cpu") is False
    assert resolve_quantization("none", "cuda") is False
    assert resolve_quantization("nf4", "cuda") is True
    with pytest.raises(RuntimeError, match="CUDA"):
        resolve_quantization("nf4", "cpu")


ZEN4 = (
    "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16\n"
)
SKYLAKE = "processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: fpu sse2 avx2 fma avx512f avx512bw\n"
SAPPHIRE = "processor\t: 0\nflags\t\t: avx2 avx512f amx_bf16 amx_tile amx_int8\n"


def test_native_bf16_is_read_from_the_cpu_flags() -> None:
    assert cpu_has_bf16(ZEN4) and cpu_has_bf16(SAPPHIRE)
    assert not cpu_has_bf16(SKYLAKE)
    assert not cpu_has_bf16("model name\t: avx512_bf16 in a name is not a flag\n")


def test_answer_precision_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from finserve.training import model

    assert resolve_precision("float32", "cpu") is None
    assert resolve_precision("bfloat16", "cpu") is torch.bfloat16
    monkeypatch.setattr(model, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") is None  # emulated bfloat16 would be slower than float32
    monkeypatch.setattr(model, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") is torch.bfloat16
    with pytest.raises(ValidationError):
        AnswerSettings(precision="float16")
