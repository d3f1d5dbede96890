"""PEFT LoRA files served without PEFT: the same logits as PEFT for its scalings (plain, rsLoRA, per-module
rank and alpha), per-row routing through the modules' own forward, detaching, and refusals that leave the
model as it was. A tiny random Llama (transformers' real class) keeps these in milliseconds."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import tiny_llama

from finserve.contracts import AdapterCorrupt
from finserve.serving.inference.cpu_kernels import load_kernels
from finserve.serving.inference.lora import (
    LoraLinear,
    Routing,
    UnsupportedAdapter,
    adapter_names,
    attach,
    detach,
    read_adapter,
)


def peft_adapters(model, folder: Path, configs: dict):
    """PEFT adapters named as ``configs``' keys with random non-zero weights, saved under ``folder/<name>``."""
    from peft import get_peft_model

    names = list(configs)
    peft = get_peft_model(model, configs[names[0]], adapter_name=names[0])
    for name in names[1:]:
        peft.add_adapter(name, configs[name])
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for key, param in peft.named_parameters():
            if "lora_" in key:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    peft.save_pretrained(str(folder), selected_adapters=names)
    return peft.eval()


IDS = torch.randint(0, 96, (3, 6), generator=torch.Generator().manual_seed(2))


def test_scalings_match_peft_through_the_modules_own_forward(tmp_path: Path) -> None:
    from peft import LoraConfig

    base = tiny_llama()
    ours = copy.deepcopy(base)
    configs = {
        "plain": LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0),
        "rs": LoraConfig(r=4, lora_alpha=8, target_modules=["o_proj"], use_rslora=True, lora_dropout=0.0),
        "patterns": LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=["up_proj", "down_proj", "k_proj"],
            rank_pattern={"down_proj": 2},
            alpha_pattern={"k_proj": 32},
            lora_dropout=0.0,
        ),
    }
    peft = peft_adapters(base, tmp_path, configs)
    routing = Routing()
    for name in configs:
        attach(ours, routing, name, read_adapter(tmp_path / name))
    assert adapter_names(ours) == set(configs)
    rows_cases = (
        ["plain", "plain", "plain"],
        ["rs", None, "patterns"],
        [None, None, None],
        ["patterns", "rs", "rs"],
    )
    with torch.inference_mode():
        plain_logits = ours(input_ids=IDS).logits  # no rows set: every row on the base model
        for rows in rows_cases:
            want = peft(input_ids=IDS, adapter_names=[r or "__base__" for r in rows]).logits
            routing.set_rows(rows)
            got = ours(input_ids=IDS).logits
            routing.set_rows(None)
            assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), rows
        with peft.disable_adapter():
            assert torch.allclose(plain_logits, peft(input_ids=IDS).logits, atol=1e-6)
    assert not torch.allclose(want, plain_logits, atol=1e-3)  # the adapters change the output


def test_detach_unwraps_modules_left_without_adapters(tmp_path: Path) -> None:
    from peft import LoraConfig

    base = tiny_llama()
    ours = copy.deepcopy(base)
    configs = {
        "a": LoraConfig(r=2, lora_alpha=2, target_modules=["q_proj", "v_proj"], lora_dropout=0.0),
        "b": LoraConfig(r=2, lora_alpha=2, target_modules=["q_proj"], lora_dropout=0.0),
    }
    peft_adapters(base, tmp_path, configs)
    for name in configs:
        attach(ours, Routing(), name, read_adapter(tmp_path / name))
    attn = ours.model.layers[0].self_attn
    assert isinstance(attn.q_proj, LoraLinear) and isinstance(attn.v_proj, LoraLinear)
    detach(ours, "a")
    assert isinstance(attn.q_proj, LoraLinear) and set(attn.q_proj.lora_A) == {"b"}
    assert type(attn.v_proj) is torch.nn.Linear  # "a" was its only adapter
    detach(ours, "b")
    assert adapter_names(ours) == set() and not any(isinstance(m, LoraLinear) for m in ours.modules())


def write_adapter(folder: Path, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "lora_alpha": 4, **config}))
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


Q = "base_model.model.model.layers.0.self_attn.q_proj"
GOOD = {f"{Q}.lora_A.weight": torch.ones(2, 64), f"{Q}.lora_B.weight": torch.ones(64, 2)}


@pytest.mark.parametrize(
    "config, tensors, error, words",
    [
        ({"use_dora": True}, GOOD, UnsupportedAdapter, "use_dora"),
        ({"bias": "lora_only"}, GOOD, UnsupportedAdapter, "biases"),
        ({"modules_to_save": ["lm_head"]}, GOOD, UnsupportedAdapter, "modules_to_save"),
        ({"peft_type": "IA3"}, GOOD, AdapterCorrupt, "not LORA"),
        (
            {},
            {**GOOD, "base_model.model.model.embed_tokens.base_layer.weight": torch.ones(96, 64)},
            UnsupportedAdapter,
            "unexpected tensor",
        ),
        ({}, {f"{Q}.lora_A.weight": torch.ones(2, 64)}, AdapterCorrupt, "lacks lora_A or lora_B"),
    ],
)
def test_what_is_not_served_is_refused_when_read(
    tmp_path: Path, config: dict, tensors: dict, error: type, words: str
) -> None:
    with pytest.raises(error, match=words):
        read_adapter(write_adapter(tmp_path / "adapter", config, tensors))


def test_an_adapter_that_does_not_fit_the_model_leaves_it_as_it_was(tmp_path: Path) -> None:
    model = tiny_llama()
    tensors = {
        **GOOD,  # fits
        "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight": torch.ones(
            2, 64
        ),  # down_proj takes 128
        "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight": torch.ones(64, 2),
    }
    adapter = read_adapter(write_adapter(tmp_path / "wide", {}, tensors))
    with pytest.raises(AdapterCorrupt, match=r"down_proj maps 64 -> 64 features, the model's 128 -> 64"):
        attach(model, Routing(), "wide", adapter)
    missing = read_adapter(
        write_adapter(
            tmp_path / "missing", {}, {k.replace("layers.0", "layers.7"): v for k, v in GOOD.items()}
        )
    )
    with pytest.raises(AdapterCorrupt, match="no module"):
        attach(model, Routing(), "missing", missing)
    assert not any(isinstance(m, LoraLinear) for m in model.modules())


@pytest.mark.skipif(load_kernels() is None, reason="no AVX2/FMA/F16C CPU or no compiled kernels here")
def test_adapters_on_a_q4_base_match_adapters_on_its_float_values(tmp_path: Path) -> None:
    """Every projection of the tiny Llama as a Q4Linear (GGUF Q4_1 blocks, no float weight) against the float32
    model of the same dequantized values: the same adapters, attached the same way, give the same logits."""
    import numpy as np
    from gguf import GGMLQuantizationType, dequantize, quantize
    from peft import LoraConfig
    from torch import nn

    from finserve.serving.inference.fast_linear import Q4Linear, Q4Maker

    kernel = load_kernels()
    assert kernel is not None
    reference = tiny_llama()
    q4 = copy.deepcopy(reference)
    maker = Q4Maker(kernel)
    for name, module in list(reference.named_modules()):
        if type(module) is nn.Linear and name.endswith("proj"):
            kind = GGMLQuantizationType.Q4_1
            blocks = quantize(module.weight.detach().numpy(), kind)
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(np.array(dequantize(blocks, kind), dtype=np.float32)))
            parent, _, child = name.rpartition(".")
            source = q4.get_submodule(name)
            setattr(
                q4.get_submodule(parent),
                child,
                maker.from_blocks(source, kernel.q4_pack(blocks, 3, module.in_features)),
            )
    assert sum(isinstance(m, Q4Linear) for m in q4.modules()) == 7 * len(q4.model.layers)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0)
    peft_adapters(copy.deepcopy(reference), tmp_path, {"ours": config})
    adapter = read_adapter(tmp_path / "ours")
    routing_q4, routing_ref = Routing(), Routing()
    attach(q4, routing_q4, "ours", adapter)
    attach(reference, routing_ref, "ours", adapter)
    wrapped = q4.get_submodule("model.layers.0.self_attn.q_proj")
    assert isinstance(wrapped, LoraLinear) and isinstance(wrapped.base_layer, Q4Linear)
    assert wrapped.lora_A["ours"].dtype == torch.float32  # a weightless base: adapters in float32
    with torch.inference_mode():
        base_q4 = q4(input_ids=IDS).logits
        for rows in (["ours", None, "ours"], ["ours", "ours", "ours"]):
            routing_q4.set_rows(rows)
            routing_ref.set_rows(rows)
            got, want = q4(input_ids=IDS).logits, reference(input_ids=IDS).logits
            assert torch.allclose(got, want, rtol=0, atol=1e-4 * float(want.abs().max()))
            assert not torch.allclose(got[0], base_q4[0], atol=1e-3)  # the adapter did apply
            if rows[1] is None:  # a base row of a mixed batch: the base layer's bits
                assert torch.equal(got[1], base_q4[1])
