"""The C decode kernels against torch (int8 matrix, RMSNorm, rotary + attention, SiLU-and-multiply), their
input checks, and how the library is built, found (prebuilt) and loaded."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from finserve.serving.inference import cpu_kernels
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


# ---- input checks: the C code trusts its sizes, so the wrappers must refuse what does not fit ----


def test_int8_linear_refuses_a_wrong_width_and_follows_the_input_dtype(kern: CPUKernels) -> None:
    torch.manual_seed(5)
    w, bias = torch.randn(16, 32), torch.randn(16)
    blocked, scales = pack(w)
    with pytest.raises(ValueError, match="in_features=32"):
        kern.linear(torch.randn(2, 24), blocked, scales, bias)  # would read past the end of each row
    x = torch.randn(2, 32)
    want = kern.linear(x, blocked, scales, bias)
    # A bfloat16 bias (a bfloat16 model quantized with quantize_linears) is not read as float32 bytes.
    assert torch.allclose(kern.linear(x, blocked, scales, bias.bfloat16()),
                          want - bias + bias.bfloat16().float(), atol=1e-5)
    out = kern.linear(x.bfloat16(), blocked, scales, None)
    assert out.dtype == torch.bfloat16  # what F.linear gives a bfloat16 input


def test_decode_kernels_refuse_widths_shapes_and_layouts_they_cannot_take(kern: CPUKernels) -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        kern.add_rmsnorm(torch.randn(2, 1, 12), None, torch.randn(12), 1e-5)
    with pytest.raises(ValueError, match="delta"):
        kern.add_rmsnorm(torch.randn(2, 1, 16), torch.randn(1, 1, 16), torch.randn(16), 1e-5)
    with pytest.raises(ValueError, match="multiple of 8"):
        kern.silu_mul(torch.randn(2, 1, 10), torch.randn(2, 1, 10))  # a flat loop of 8 at a time
    with pytest.raises(ValueError, match="non-contiguous"):
        kern.silu_mul(torch.randn(16, 2).t(), torch.randn(2, 16))

    batch, heads, kv_heads, dim, capacity = 2, 4, 2, 8, 6
    q = torch.randn(batch, 1, heads * dim)
    k, v = torch.randn(batch, 1, kv_heads * dim), torch.randn(batch, 1, kv_heads * dim)
    cos, sin = torch.ones(16, dim), torch.zeros(16, dim)
    keys, values = torch.zeros(batch, kv_heads, capacity, dim), torch.zeros(batch, kv_heads, capacity, dim)
    positions = torch.tensor([3, 4])

    def attend(**change):
        args = {"q": q, "k": k, "v": v, "cos": cos, "signed_sin": sin, "positions": positions, "keys": keys,
                "values": values, "column": 4, "valid": None, "scale": 1.0, "heads": heads}
        return kern.rope_attend(**{**args, **change})

    assert attend().shape == (batch, 1, heads * dim)
    with pytest.raises(ValueError, match="column"):
        attend(column=capacity)  # would write the new key past the cache
    with pytest.raises(ValueError, match="valid"):
        attend(valid=torch.ones(batch, 3, dtype=torch.uint8))  # a mask narrower than the columns read
    with pytest.raises(ValueError, match="q"):
        attend(q=q[:1])  # a cache of two rows with one row of queries
    with pytest.raises(ValueError, match="positions"):
        attend(positions=torch.tensor([3, 4], dtype=torch.int32))


LONG_CONTEXT = r"""
import threading, torch
from finserve.serving.inference.cpu_kernels import load_kernels
kern = load_kernels()
torch.set_num_threads(1)  # the kernel then runs on the calling thread and its small stack
columns, dim = 200_000, 8  # 800 kB of scores for one head
keys, values = torch.zeros(1, 1, columns, dim), torch.ones(1, 1, columns, dim)
cos, sin = torch.ones(1, dim), torch.zeros(1, dim)
result = {}

def run():
    out = kern.rope_attend(torch.ones(1, 1, dim), torch.ones(1, 1, dim), torch.ones(1, 1, dim), cos, sin,
                           torch.zeros(1, dtype=torch.int64), keys, values, columns - 1, None, 1.0, 1)
    result["out"] = out

threading.stack_size(256 * 1024)
t = threading.Thread(target=run)
t.start()
t.join()
assert torch.allclose(result["out"], torch.ones(1, 1, dim)), result
print("ok")
"""


def test_rope_attend_keeps_long_context_scores_off_the_thread_stack() -> None:
    """Scores for 200k cached columns (800 kB) on a thread with a 256 kB stack: a stack array
    there crashes the process, so this runs in a subprocess."""
    proc = subprocess.run([sys.executable, "-P", "-c", LONG_CONTEXT], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0 and "ok" in proc.stdout, (proc.returncode, proc.stderr[-2000:])


# ---- building, finding and loading the library ----


def fresh_load() -> CPUKernels | None:
    """load_kernels without its per-process cache."""
    return cpu_kernels.load_kernels.__wrapped__()


@pytest.fixture(scope="module")
def prebuilt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the library built by this source, as an image build leaves it."""
    folder = tmp_path_factory.mktemp("prebuilt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FINSERVE_KERNEL_DIR", str(folder))
        assert fresh_load() is not None
    return folder


def test_a_built_library_is_readable_by_other_users(prebuilt: Path) -> None:
    """An image builds as root and serves as uid 10001: the library must be readable, not only executable."""
    (library,) = prebuilt.glob("finserve_kernels-*.so")
    assert library.stat().st_mode & 0o777 == 0o755
    assert [p.name for p in prebuilt.iterdir()] == [library.name]  # no temp .so or .c left behind


def test_a_prebuilt_library_loads_without_a_compiler_and_without_writing(
    prebuilt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINSERVE_KERNEL_DIR", str(prebuilt))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", "")  # no cc, no gcc: the runtime image

    def no_compiling(*args, **kwargs):
        raise AssertionError(f"compiled although a library was there: {args}")

    monkeypatch.setattr(cpu_kernels.subprocess, "run", no_compiling)
    before = sorted(p.name for p in prebuilt.iterdir())
    loaded = fresh_load()
    assert loaded is not None
    blocked, scales = pack(torch.eye(8))
    assert torch.allclose(loaded.linear(torch.arange(8.0)[None], blocked, scales, None), torch.arange(8.0)[None])
    assert sorted(p.name for p in prebuilt.iterdir()) == before


def test_without_a_compiler_or_avx2_it_falls_back_to_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSERVE_KERNEL_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(cpu_kernels.tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", "")
    assert fresh_load() is None  # nothing prebuilt, nothing to build with
    monkeypatch.setenv("CC", "/bin/false")  # a compiler that fails
    assert fresh_load() is None
    monkeypatch.setattr(cpu_kernels, "cpu_supported", lambda: False)
    assert fresh_load() is None


def test_an_untrusted_temp_folder_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the cache folder unwritable the build goes under the temp dir; a folder there that others
    can write into may hold a planted library, so a private one is used instead."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("FINSERVE_KERNEL_DIR", str(blocker / "kernels"))  # mkdir fails: not a directory
    monkeypatch.setattr(cpu_kernels.tempfile, "tempdir", str(tmp_path))
    shared = tmp_path / f"finserve-kernels-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)
    for flags in ((*cpu_kernels._BASE_FLAGS, "-fopenmp"), cpu_kernels._BASE_FLAGS):
        digest = hashlib.sha256((cpu_kernels.SOURCE + " ".join(flags)).encode()).hexdigest()[:16]
        (shared / f"finserve_kernels-{digest}.so").write_text("not a library")
    loaded = fresh_load()
    assert loaded is not None
    private = [p for p in tmp_path.iterdir() if p.name.startswith("finserve-kernels-") and p != shared]
    assert len(private) == 1 and list(private[0].glob("finserve_kernels-*.so"))
    assert private[0].stat().st_mode & 0o777 == 0o700


def test_the_cli_prebuilds_the_library_the_loader_finds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`finserve model kernels --out DIR` (the image build's step) leaves the file load_kernels looks for."""
    from typer.testing import CliRunner

    from finserve.cli import app

    result = CliRunner().invoke(app, ["model", "kernels", "--out", str(tmp_path / "kernels")])
    assert result.exit_code == 0, result.output
    (library,) = (tmp_path / "kernels").glob("finserve_kernels-*.so")
    assert result.output.strip() == str(library)
    monkeypatch.setenv("FINSERVE_KERNEL_DIR", str(tmp_path / "kernels"))
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CC", raising=False)
    assert fresh_load() is not None
    monkeypatch.setenv("CC", "/bin/false")
    failed = CliRunner().invoke(app, ["model", "kernels", "--out", str(tmp_path / "other")])
    assert failed.exit_code == 1 and "could not build" in failed.output
