"""float16-packed Linear: same results as float32 within half precision, and LoRA still applies."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from finserve.serving.inference.fast_linear import PackedFP16Linear, fbgemm_available, pack_linears

pytestmark = pytest.mark.skipif(not fbgemm_available(), reason="this torch build has no fbgemm")


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(64, 32, bias=False)
        self.out = nn.Linear(32, 16, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.q_proj(x)))


def test_packed_matches_float32_within_half_precision() -> None:
    torch.manual_seed(0)
    ref = nn.Linear(64, 48, bias=True)
    packed = PackedFP16Linear(ref)
    x = torch.randn(2, 5, 64)
    got, want = packed(x), ref(x)
    assert got.shape == want.shape == (2, 5, 48)
    assert torch.allclose(got, want, atol=2e-2, rtol=1e-2)
    assert not torch.equal(got, want)  # it really computed in half precision
    assert packed.weight is ref.weight  # the float32 weight is shared, not copied


def test_pack_linears_replaces_every_plain_linear_and_survives_deepcopy() -> None:
    torch.manual_seed(0)
    model = Tiny()
    x = torch.randn(3, 64)
    want = model(x)
    assert pack_linears(model) == 2
    assert all(type(m) is PackedFP16Linear for m in (model.q_proj, model.out))
    clone = copy.deepcopy(model)  # the packed C++ object cannot be copied; it is rebuilt on use
    assert torch.allclose(clone(x), want, atol=2e-2)


def test_lora_on_packed_base_adds_the_float32_delta() -> None:
    torch.manual_seed(0)
    model = Tiny()
    pack_linears(model)
    x = torch.randn(3, 64)
    base_out = model.q_proj(x)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], lora_dropout=0.0))
    layer = peft_model.base_model.model.q_proj
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, 0.5)
    delta = layer.lora_B["default"](layer.lora_A["default"](x)) * layer.scaling["default"]
    assert layer.lora_A["default"].weight.dtype == torch.float32
    assert torch.allclose(layer(x), base_out + delta, atol=1e-5)
    assert delta.abs().max() > 0.1
