"""The C decode kernels against torch: int8 matrix, RMSNorm, rotary + attention, SiLU-and-multiply."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from finserve.serving.inference.cpu_kernels import CPUKernels, load_kernels, pack, quantize, unpack

KERNELS = load_kernels()
pytestmark = pytest.mark.skipif(KERNELS is None, reason="no AVX2/FMA CPU or no C compiler here")


@pytest.fixture
def kern() -> CPUKernels:
    assert KERNELS is not None
    return KERNELS


def dequantized(weight: torch.Tensor) -> torch.Tensor:
    q, scales = quantize(weight)
    return q.float() * scales[:, None]


def test_pack_is_per_channel_int8_in_blocks() -> None:
    torch.manual_seed(0)
    w = torch.randn(48, 64)
    blocked, scales = pack(w)
    q, _ = quantize(w)
    assert blocked.dtype == torch.int8 and scales.shape == (48,)
    assert torch.equal(unpack(blocked), q)
    assert int(q.abs().max()) == 127
    # one int8 step of the row's own scale: the error bound of symmetric rounding
    assert bool(((q.float() * scales[:, None] - w).abs() <= scales[:, None] / 2 + 1e-6).all())
    with pytest.raises(ValueError, match="divisible by 8"):
        pack(torch.randn(12, 64))


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 7, 8, 9, 17])
def test_int8_linear_matches_the_dequantized_matmul(kern: CPUKernels, rows: int) -> None:
    torch.manual_seed(rows)
    w, bias = torch.randn(80, 96), torch.randn(80)
    x = torch.randn(rows, 96)
    blocked, scales = pack(w)
    got = kern.linear(x, blocked, scales, bias)
    want = x @ dequantized(w).T + bias
    assert got.shape == (rows, 80)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-5)
    assert torch.allclose(kern.linear(x, blocked, scales, None), want - bias, atol=1e-4, rtol=1e-5)


def test_int8_linear_gives_a_row_the_same_bits_whatever_its_batch_or_threads(kern: CPUKernels) -> None:
    torch.manual_seed(1)
    w, bias = torch.randn(128, 64), torch.randn(128)
    blocked, scales = pack(w)
    x = torch.randn(11, 1, 64)
    batched = kern.linear(x, blocked, scales, bias)
    assert batched.shape == (11, 1, 128)
    for i in range(11):
        assert torch.equal(kern.linear(x[i : i + 1], blocked, scales, bias), batched[i : i + 1])
    for size in range(2, 11):
        assert torch.equal(kern.linear(x[:size], blocked, scales, bias), batched[:size])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert torch.equal(kern.linear(x, blocked, scales, bias), batched)
    finally:
        torch.set_num_threads(before)


def test_add_rmsnorm_matches_torch_and_updates_the_residual_in_place(kern: CPUKernels) -> None:
    torch.manual_seed(2)
    hidden, delta, weight = torch.randn(3, 1, 64), torch.randn(3, 1, 64), torch.randn(64)
    want_hidden = hidden + delta
    out = kern.add_rmsnorm(hidden, delta, weight, 1e-5)
    assert torch.equal(hidden, want_hidden)
    assert torch.allclose(out, F.rms_norm(want_hidden, (64,), weight, 1e-5), atol=1e-5, rtol=1e-5)
    assert torch.allclose(kern.add_rmsnorm(hidden, None, weight, 1e-5), out)


def reference_attention(q, k, v, cos, sin, positions, keys, values, column, valid, heads):
    """rotary + cache write + SDPA with torch, on copies of the caches."""
    batch, kv_heads, _, dim = keys.shape
    keys, values = keys.clone(), values.clone()
    c, s = cos[positions][:, None, None, :], sin[positions][:, None, None, :]

    def rope(x):  # x [batch, heads, 1, dim]; sin here is the plain one: rotate_half(x) * sin
        half = dim // 2
        return x * c + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * s

    qh = q.view(batch, 1, heads, dim).transpose(1, 2)
    kh = k.view(batch, 1, kv_heads, dim).transpose(1, 2)
    vh = v.view(batch, 1, kv_heads, dim).transpose(1, 2)
    keys[:, :, column : column + 1] = rope(kh)
    values[:, :, column : column + 1] = vh
    mask = None if valid is None else valid.bool()[:, None, None, :]
    out = F.scaled_dot_product_attention(rope(qh), keys[:, :, : column + 1], values[:, :, : column + 1],
                                         attn_mask=mask, enable_gqa=True)
    return out.transpose(1, 2).reshape(batch, 1, heads * dim), keys, values


@pytest.mark.parametrize("padded", [False, True])
def test_rope_attend_matches_rotary_and_sdpa(kern: CPUKernels, padded: bool) -> None:
    torch.manual_seed(3)
    batch, heads, kv_heads, dim, capacity, column = 3, 6, 2, 16, 12, 7
    q = torch.randn(batch, 1, heads * dim)
    k, v = torch.randn(batch, 1, kv_heads * dim), torch.randn(batch, 1, kv_heads * dim)
    angles = torch.rand(32, dim // 2) * 3
    cos, sin = torch.cat((angles, angles), -1).cos(), torch.cat((angles, angles), -1).sin()
    signed_sin = torch.cat((-sin[:, : dim // 2], sin[:, dim // 2 :]), -1).contiguous()
    positions = torch.tensor([7, 5, 20])
    keys, values = torch.randn(batch, kv_heads, capacity, dim), torch.randn(batch, kv_heads, capacity, dim)
    valid = None
    if padded:
        valid = torch.ones(batch, column + 1, dtype=torch.uint8)
        valid[1, :2] = 0  # left padding of row 1
    want, want_keys, want_values = reference_attention(q, k, v, cos, sin, positions, keys, values, column, valid,
                                                       heads)
    got = kern.rope_attend(q, k, v, cos, signed_sin, positions, keys, values, column, valid, dim**-0.5, heads)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    assert torch.allclose(keys, want_keys, atol=1e-6) and torch.equal(values, want_values)


def test_silu_mul_in_place(kern: CPUKernels) -> None:
    torch.manual_seed(4)
    gate, up = torch.randn(2, 1, 40), torch.randn(2, 1, 40)
    want = F.silu(gate) * up
    out = kern.silu_mul(gate, up)
    assert out is gate and torch.allclose(out, want, atol=1e-6, rtol=1e-5)
