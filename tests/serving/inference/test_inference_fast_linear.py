"""Int8 and float16-packed Linears: close to float32 (int8: one int8 copy for prefill too, unless the float32
weight is kept), and LoRA still applies."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from finserve.serving.inference.cpu_kernels import load_kernels
from finserve.serving.inference.fast_linear import (
    Int8Linear,
    PackedFP16Linear,
    Q4Linear,
    Q4Maker,
    fbgemm_available,
    pack_linears,
    quantize_linears,
)

needs_fbgemm = pytest.mark.skipif(not fbgemm_available(), reason="this torch build has no fbgemm")
needs_kernels = pytest.mark.skipif(
    load_kernels() is None, reason="no AVX2/FMA CPU or no compiled kernels here"
)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(64, 32, bias=False)
        self.out = nn.Linear(32, 16, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.q_proj(x)))


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


@needs_fbgemm
def test_packed_matches_float32_within_half_precision_on_decode_steps() -> None:
    torch.manual_seed(0)
    ref = nn.Linear(64, 48, bias=True)
    packed = PackedFP16Linear(ref)
    x = torch.randn(2, 1, 64)  # a decode step: one position per row
    got, want = packed(x), ref(x)
    assert got.shape == want.shape == (2, 1, 48)
    assert torch.allclose(got, want, atol=2e-2, rtol=1e-2)
    assert not torch.equal(got, want)  # it really computed in half precision
    assert packed.weight is ref.weight  # the float32 weight is shared, not copied


@needs_fbgemm
def test_packed_prefill_is_plain_float32() -> None:
    torch.manual_seed(0)
    ref = nn.Linear(64, 48, bias=True)
    x = torch.randn(2, 5, 64)  # five positions per row: compute-bound, float32 is faster and exact
    assert torch.equal(PackedFP16Linear(ref)(x), ref(x))


@needs_fbgemm
def test_pack_linears_replaces_every_plain_linear_and_survives_deepcopy() -> None:
    torch.manual_seed(0)
    model = Tiny()
    x = torch.randn(3, 64)
    want = model(x)
    assert pack_linears(model) == 2
    assert all(type(m) is PackedFP16Linear for m in (model.q_proj, model.out))
    clone = copy.deepcopy(model)  # the packed C++ object cannot be copied; it is rebuilt on use
    assert torch.allclose(clone(x), want, atol=2e-2)


@needs_fbgemm
def test_lora_on_packed_base_adds_the_float32_delta() -> None:
    torch.manual_seed(0)
    model = Tiny()
    pack_linears(model)
    x = torch.randn(3, 64)
    base_out = model.q_proj(x)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], lora_dropout=0.0)
    )
    layer = peft_model.base_model.model.q_proj
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, 0.5)
    delta = layer.lora_B["default"](layer.lora_A["default"](x)) * layer.scaling["default"]
    assert layer.lora_A["default"].weight.dtype == torch.float32
    assert torch.allclose(layer(x), base_out + delta, atol=1e-5)
    assert delta.abs().max() > 0.1


@needs_kernels
def test_int8_keeps_one_int8_copy_for_decode_and_prefill() -> None:
    torch.manual_seed(0)
    ref = nn.Linear(64, 48, bias=True)
    layer = Int8Linear(ref, load_kernels())
    assert layer.weight is None and set(dict(layer.named_parameters())) == {"bias"}
    assert set(layer.state_dict()) == {"bias"}  # no float32 copy anywhere on the module
    with torch.inference_mode():
        step = torch.randn(4, 1, 64)
        got = layer(step)
        assert got.shape == (4, 1, 48)
        assert 0 < relative_error(got, ref(step)) < 1e-2  # int8 per channel: well under 1 % here
        prompt = torch.randn(2, 6, 64)
        whole = layer(prompt)
        assert 0 < relative_error(whole, ref(prompt)) < 1e-2
        # a prompt's positions get the bits each would get as a decode step: the same weights, one kernel
        assert torch.equal(whole[:, 3:4], layer(prompt[:, 3:4].contiguous()))
    with pytest.raises(RuntimeError, match="no float32 weight"):
        layer.repack()


@needs_kernels
def test_int8_with_keep_float_prefills_exactly_in_float32() -> None:
    torch.manual_seed(0)
    ref = nn.Linear(64, 48, bias=True)
    layer = Int8Linear(ref, load_kernels(), keep_float=True)
    with torch.inference_mode():
        step, prompt = torch.randn(4, 1, 64), torch.randn(2, 6, 64)
        assert torch.equal(layer(prompt), ref(prompt))
        assert 0 < relative_error(layer(step), ref(step)) < 1e-2
    assert layer.weight is ref.weight and set(dict(layer.named_parameters())) == {"weight", "bias"}


@needs_kernels
def test_int8_rows_do_not_depend_on_their_batch() -> None:
    torch.manual_seed(0)
    layer = Int8Linear(nn.Linear(64, 48), load_kernels())
    x = torch.randn(8, 1, 64)
    with torch.inference_mode():
        batched = layer(x)
        assert all(torch.equal(layer(x[i : i + 1]), batched[i : i + 1]) for i in range(8))


@needs_kernels
def test_quantize_linears_skips_sizes_the_kernel_cannot_take_and_survives_deepcopy() -> None:
    torch.manual_seed(0)
    model = Tiny()
    model.odd = nn.Linear(64, 30)  # 30 outputs: not a multiple of 8, stays float32
    assert quantize_linears(model) == 2
    assert type(model.q_proj) is Int8Linear and type(model.out) is Int8Linear and type(model.odd) is nn.Linear
    x = torch.randn(3, 64)
    with torch.inference_mode():
        want = model(x)
        assert torch.equal(copy.deepcopy(model)(x), want)
    assert model.q_proj.weight is None and model.odd.weight is not None
    kept = Tiny()
    assert quantize_linears(kept, keep_float=True) == 2
    assert kept.q_proj.weight is not None and kept.q_proj.keep_float  # cpu.int8_prefill: float32


@needs_kernels
def test_lora_on_int8_base_adds_the_float32_delta() -> None:
    torch.manual_seed(0)
    model = Tiny()
    quantize_linears(model)
    x = torch.randn(3, 1, 64)
    with torch.inference_mode():
        base_out = model.q_proj(x)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], lora_dropout=0.0)
    )
    layer = peft_model.base_model.model.q_proj
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, 0.5)
    with torch.inference_mode():
        delta = layer.lora_B["default"](layer.lora_A["default"](x)) * layer.scaling["default"]
        assert torch.allclose(layer(x), base_out + delta, atol=1e-5)
        mixed = layer(torch.cat([x, x]), adapter_names=["default"] * 3 + ["__base__"] * 3)
        assert torch.allclose(mixed[:3], base_out + delta, atol=1e-5) and torch.equal(mixed[3:], base_out)
    assert delta.abs().max() > 0.1


def mapped(path) -> bool:
    return str(path) in open("/proc/self/maps").read()


@needs_kernels
def test_int8_only_weights_let_the_checkpoint_s_memory_map_go(tmp_path) -> None:
    """transformers maps a safetensors checkpoint and its tensors point into the map; with the float32 Linear
    weights dropped, what is left is copied out so the map (every page quantisation read) is released."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from finserve.serving.inference.fast_linear import detach_from_checkpoint

    config = LlamaConfig(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    checkpoint = tmp_path / "model.safetensors"
    model = LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert mapped(checkpoint)  # what the test is about: the weights point into the file's map
    ids = torch.tensor([[1, 5, 9, 2]])
    with torch.inference_mode():
        want = model(ids).logits
    assert quantize_linears(model) == 15  # 7 per layer and the tied lm_head
    detach_from_checkpoint(model)
    import gc

    gc.collect()
    if mapped(checkpoint):
        pytest.fail("the checkpoint is still mapped after every tensor got its own memory")
    assert model.lm_head.weight is None and model.model.embed_tokens.weight is not None
    with torch.inference_mode():
        assert relative_error(model(ids).logits, want) < 2e-2  # int8 weights throughout, prefill included


def q4_layer(out_features: int, in_features: int, qtype: str = "Q4_1") -> tuple[Q4Linear, nn.Linear]:
    """A Q4Linear of random GGUF blocks and the float32 nn.Linear of their ``gguf`` dequantization (same bias)."""
    import numpy as np
    from gguf import GGMLQuantizationType, dequantize, quantize

    kind = GGMLQuantizationType[qtype]
    ref = nn.Linear(in_features, out_features, bias=True)
    blocks = quantize(ref.weight.detach().numpy(), kind)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(np.array(dequantize(blocks, kind), dtype=np.float32)))
    kernel = load_kernels()
    assert kernel is not None
    return Q4Maker(kernel).from_blocks(ref, kernel.q4_pack(blocks, kind.value, in_features)), ref


@needs_kernels
@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1"])
def test_q4_keeps_only_the_blocks_and_computes_the_dequantized_linear(qtype: str) -> None:
    torch.manual_seed(0)
    layer, ref = q4_layer(48, 64, qtype)
    assert layer.weight is None and set(dict(layer.named_parameters())) == {"bias"}
    assert set(layer.state_dict()) == {"bias"}
    assert layer.qweight.dtype == torch.uint8 and layer.qweight.numel() == 48 * 64 * 5 // 8  # 5 bits a weight
    with torch.inference_mode():
        step, prompt = torch.randn(4, 1, 64), torch.randn(2, 6, 64)
        got = layer(step)
        assert got.shape == (4, 1, 48)
        assert relative_error(got, ref(step)) < 1e-6  # the file's values: only float32 rounding apart
        whole = layer(prompt)
        assert relative_error(whole, ref(prompt)) < 1e-6
        assert torch.equal(whole[:, 3:4], layer(prompt[:, 3:4].contiguous()))  # prefill = decode bits
        assert layer(step.to(torch.bfloat16)).dtype == torch.bfloat16  # the input's dtype, as F.linear
        assert torch.equal(copy.deepcopy(layer)(step), got)
    with pytest.raises(ValueError, match="q4 blocks"):
        Q4Linear(nn.Linear(64, 40), load_kernels(), layer.qweight)


@needs_kernels
def test_q4_maker_keeps_only_4_bit_types_and_sizes_it_can_pack() -> None:
    maker = Q4Maker(load_kernels())
    assert maker.keeps_blocks(2, 48, 64) and maker.keeps_blocks(3, 48, 64)
    assert not maker.keeps_blocks(8, 48, 64)  # Q8_0: int8 rows
    assert not maker.keeps_blocks(3, 48, 48)  # rows of 48 values: not whole blocks
    assert not maker.keeps_blocks(3, 44, 64)  # 44 rows: not whole 8-row groups
    assert type(maker(nn.Linear(64, 48))) is Int8Linear  # a float32 Linear (another type): int8, as before


@needs_kernels
def test_lora_on_q4_base_adds_the_float32_delta() -> None:
    torch.manual_seed(0)
    model = Tiny()
    model.q_proj, ref = q4_layer(32, 64)
    x = torch.randn(3, 1, 64)
    with torch.inference_mode():
        base_out = model.q_proj(x)
        assert relative_error(base_out, ref(x)) < 1e-6
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], lora_dropout=0.0)
    )
    layer = peft_model.base_model.model.q_proj
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, 0.5)
    with torch.inference_mode():
        delta = layer.lora_B["default"](layer.lora_A["default"](x)) * layer.scaling["default"]
        assert torch.allclose(layer(x), base_out + delta, atol=1e-5)
    assert delta.abs().max() > 0.1
