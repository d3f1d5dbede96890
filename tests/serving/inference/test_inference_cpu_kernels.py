"""The C decode kernels against torch (int8 matrix in each variant this CPU runs, RMSNorm, rotary + attention,
SiLU-and-multiply), their input checks, the CPU feature detection that picks a variant, and how the compiled
extension is found and loaded (never built) at run time."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import functional as F

from finserve.serving.inference import cpu_kernels
from finserve.serving.inference.cpu_kernels import (
    CPUKernels,
    choose_variant,
    load_kernels,
    open_kernels,
    pack,
    parse_cpu_flags,
    quantize,
    runnable_variants,
    unpack,
)

KERNELS = load_kernels()
RUNNABLE = runnable_variants(cpu_kernels.cpu_flags(), platform.machine())
# Skipped only where the CPU cannot run them: a dev install without the compiled library fails instead.
needs_kernels = pytest.mark.skipif(not RUNNABLE, reason="no AVX2/FMA x86-64 CPU here")


@pytest.fixture
def kern() -> CPUKernels:
    if not RUNNABLE:
        pytest.skip("no AVX2/FMA x86-64 CPU here")
    assert KERNELS is not None, cpu_kernels.kernel_report().problem
    return KERNELS


@pytest.fixture(params=["avx512", "avx2"])
def variant(request: pytest.FixtureRequest) -> CPUKernels:
    """The int8 matrix kernel of each variant this CPU can run (the others are skipped, and said so)."""
    if request.param not in RUNNABLE:
        pytest.skip(f"this CPU cannot run the {request.param} kernels")
    return open_kernels(request.param)


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
def test_int8_linear_matches_the_dequantized_matmul(variant: CPUKernels, rows: int) -> None:
    kern = variant
    torch.manual_seed(rows)
    w, bias = torch.randn(80, 96), torch.randn(80)
    x = torch.randn(rows, 96)
    blocked, scales = pack(w)
    got = kern.linear(x, blocked, scales, bias)
    want = x @ dequantized(w).T + bias
    assert got.shape == (rows, 80)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-5)
    assert torch.allclose(kern.linear(x, blocked, scales, None), want - bias, atol=1e-4, rtol=1e-5)


def test_int8_linear_gives_a_row_the_same_bits_whatever_its_batch_or_threads(variant: CPUKernels) -> None:
    kern = variant
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


@pytest.mark.parametrize("threads", [2, 3, 5, 16])
def test_the_thread_pool_splits_work_without_changing_a_bit(kern: CPUKernels, threads: int) -> None:
    """13 weight groups and 6 key/value heads over 2..16 threads (uneven slices, more threads than work)."""
    torch.manual_seed(2)
    blocked, scales = pack(torch.randn(104, 64))
    x = torch.randn(3, 64)
    q, k, v = torch.randn(2, 1, 12 * 8), torch.randn(2, 1, 6 * 8), torch.randn(2, 1, 6 * 8)
    cos, sin = torch.randn(16, 8), torch.randn(16, 8)
    positions = torch.tensor([4, 9], dtype=torch.int64)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = torch.zeros(2, 6, 16, 8), torch.zeros(2, 6, 16, 8)
        keys[:, :, :9], values[:, :, :9] = (
            torch.randn(2, 6, 9, 8, generator=torch.Generator().manual_seed(3)),
            1.0,
        )
        out = kern.rope_attend(q, k, v, cos, sin, positions, keys, values, 9, None, 0.3, 12)
        return kern.linear(x, blocked, scales, None), out

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = run()
        torch.set_num_threads(threads)
        split = run()
    finally:
        torch.set_num_threads(before)
    assert torch.equal(alone[0], split[0]) and torch.equal(alone[1], split[1])


def test_python_threads_calling_at_once_share_the_pool_safely(kern: CPUKernels) -> None:
    """One job at a time: a caller that finds the pool busy computes alone, with the same result."""
    torch.manual_seed(4)
    blocked, scales = pack(torch.randn(1536, 576))
    inputs = [torch.randn(4, 576) for _ in range(6)]
    expected = [kern.linear(x, blocked, scales, None) for x in inputs]
    failures: list[int] = []

    def hammer(i: int) -> None:
        for _ in range(40):
            if not torch.equal(kern.linear(inputs[i], blocked, scales, None), expected[i]):
                failures.append(i)

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(len(inputs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        torch.set_num_threads(before)
    assert failures == []


FORKED = r"""
import os, torch
from finserve.serving.inference.cpu_kernels import load_kernels, pack
kern = load_kernels()
torch.set_num_threads(2)
blocked, scales = pack(torch.randn(256, 64))
x = torch.randn(2, 64)
before = kern.linear(x, blocked, scales, None)  # the parent's pool has started its worker
pid = os.fork()
if pid == 0:  # the child has no worker thread: its pool must start over, not wait for one forever
    os._exit(0 if torch.equal(kern.linear(x, blocked, scales, None), before) else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
print("ok")
"""


def test_a_forked_child_runs_the_threaded_kernels() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", FORKED], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, (proc.returncode, proc.stderr[-2000:])


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
    out = F.scaled_dot_product_attention(
        rope(qh), keys[:, :, : column + 1], values[:, :, : column + 1], attn_mask=mask, enable_gqa=True
    )
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
    want, want_keys, want_values = reference_attention(
        q, k, v, cos, sin, positions, keys, values, column, valid, heads
    )
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


def test_int8_linear_refuses_a_wrong_width_and_follows_the_input_dtype(variant: CPUKernels) -> None:
    kern = variant
    torch.manual_seed(5)
    w, bias = torch.randn(16, 32), torch.randn(16)
    blocked, scales = pack(w)
    with pytest.raises(ValueError, match="in_features=32"):
        kern.linear(torch.randn(2, 24), blocked, scales, bias)  # would read past the end of each row
    x = torch.randn(2, 32)
    want = kern.linear(x, blocked, scales, bias)
    # A bfloat16 bias (a bfloat16 model quantized with quantize_linears) is not read as float32 bytes.
    assert torch.allclose(
        kern.linear(x, blocked, scales, bias.bfloat16()), want - bias + bias.bfloat16().float(), atol=1e-5
    )
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
        args = {
            "q": q,
            "k": k,
            "v": v,
            "cos": cos,
            "signed_sin": sin,
            "positions": positions,
            "keys": keys,
            "values": values,
            "column": 4,
            "valid": None,
            "scale": 1.0,
            "heads": heads,
        }
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
    proc = subprocess.run(
        [sys.executable, "-P", "-c", LONG_CONTEXT], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, (proc.returncode, proc.stderr[-2000:])


# ---- the variants: the same arithmetic, chosen from the CPU's flags ----


@pytest.mark.skipif(RUNNABLE[:1] != ["avx512"], reason="this CPU has no AVX-512: only the AVX2 variant runs")
@pytest.mark.parametrize("rows", [1, 3, 4, 5, 8, 13])
def test_the_avx512_kernel_gives_the_avx2_kernel_s_bits(rows: int) -> None:
    """Both sum every (row, output) lane by lane in the same order: a replica gives the same tokens on
    either kind of CPU."""
    torch.manual_seed(10 + rows)
    w, bias = torch.randn(576, 1536), torch.randn(576)
    blocked, scales = pack(w)
    x = torch.randn(rows, 1536)
    wide, narrow = open_kernels("avx512"), open_kernels("avx2")
    assert wide.variant == "avx512" and narrow.variant == "avx2"
    assert torch.equal(wide.linear(x, blocked, scales, bias), narrow.linear(x, blocked, scales, bias))


EPYC_GENOA = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 avx512f avx512dq avx512cd avx512bw \
avx512vl avx512_bf16 avx512vbmi avx512_vnni avx512_bitalg
bugs\t\t: sysret_ss_attrs

processor\t: 1
flags\t\t: fpu sse sse2
"""
HASWELL = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU E5-2680 v3\nflags\t\t: fpu sse2 avx f16c fma avx2 bmi2\n"
SANDY_BRIDGE = "processor\t: 0\nflags\t\t: fpu sse2 sse4_2 avx\n"
GRAVITON = (
    "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n"
)


@pytest.mark.parametrize(
    ("cpuinfo", "machine", "requested", "want"),
    [
        (EPYC_GENOA, "x86_64", "auto", "avx512"),
        (EPYC_GENOA, "x86_64", "avx2", "avx2"),
        (EPYC_GENOA, "x86_64", "off", None),
        (HASWELL, "x86_64", "auto", "avx2"),
        (HASWELL, "x86_64", "avx512", "avx2"),  # asked for what the CPU lacks: never an illegal instruction
        (SANDY_BRIDGE, "x86_64", "auto", None),  # AVX without AVX2/FMA
        (HASWELL.replace(" f16c", ""), "x86_64", "auto", None),  # the q4 kernel's float16 scales need F16C
        (GRAVITON, "aarch64", "auto", None),
        (HASWELL, "aarch64", "auto", None),  # x86 flags on another machine (a copied text) do not count
        ("", "x86_64", "auto", None),  # /proc/cpuinfo unreadable
    ],
)
def test_the_variant_follows_the_cpu_flags(
    cpuinfo: str, machine: str, requested: str, want: str | None
) -> None:
    assert choose_variant(parse_cpu_flags(cpuinfo), machine, requested) == want


def test_cpuinfo_flags_are_the_first_processor_s() -> None:
    flags = parse_cpu_flags(EPYC_GENOA)
    assert {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"} <= flags
    assert "avx512vl" in flags and "avx512f" not in parse_cpu_flags(HASWELL)
    assert parse_cpu_flags(GRAVITON) == frozenset()
    with pytest.raises(ValueError, match="FINSERVE_CPU_KERNELS"):
        choose_variant(flags, "x86_64", "avx512_vnni")  # detected and reported, but no variant of its own


def test_the_report_names_this_cpu_s_features_and_variant() -> None:
    report = cpu_kernels.kernel_report("auto")
    flags = cpu_kernels.cpu_flags()
    assert report.features["avx512_vnni"] == ("avx512_vnni" in flags)
    assert report.variant == (RUNNABLE[0] if RUNNABLE else None)
    assert (report.problem is None) == bool(RUNNABLE)


# ---- the compiled extension: installed with the package, loaded, never built here ----


def fresh_load() -> CPUKernels | None:
    """load_kernels without its per-process cache."""
    return cpu_kernels.load_kernels.__wrapped__()


@needs_kernels
def test_the_dev_install_runs_the_compiled_extension_not_the_fallback() -> None:
    assert KERNELS is not None, cpu_kernels.kernel_report().problem  # e.g. not built: run pip install -e .
    assert KERNELS.variant == RUNNABLE[0]
    report = cpu_kernels.kernel_report()
    assert report.extension is not None and Path(report.extension).name.startswith("_kernels.")
    assert Path(report.extension).suffix == ".so"
    assert report.threads and KERNELS.threaded  # the x86-64 build has its thread pool


@needs_kernels
def test_a_missing_extension_falls_back_with_a_message_saying_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An install built without a C compiler (setup.py then skips the extension) serves without kernels."""
    monkeypatch.setattr(cpu_kernels, "EXTENSION", "finserve.serving.inference._kernels_never_built")
    with caplog.at_level(logging.WARNING, logger=cpu_kernels.__name__):
        assert fresh_load() is None
    assert "not installed" in caplog.text and "install gcc and reinstall" in caplog.text
    with pytest.raises(RuntimeError, match="not installed"):
        open_kernels("avx2")


@needs_kernels
def test_a_stale_in_place_build_is_refused_not_called(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An editable install's .so from before a signature change would be called with the wrong arguments."""
    monkeypatch.setattr(cpu_kernels, "ABI", cpu_kernels.ABI + 1)
    with caplog.at_level(logging.WARNING, logger=cpu_kernels.__name__):
        assert fresh_load() is None
    assert "stale build" in caplog.text


def test_no_avx2_or_switched_off_means_no_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSERVE_CPU_KERNELS", "off")
    assert fresh_load() is None
    monkeypatch.setenv("FINSERVE_CPU_KERNELS", "auto")
    monkeypatch.setattr(cpu_kernels, "cpu_flags", lambda: parse_cpu_flags(SANDY_BRIDGE))
    assert fresh_load() is None
    assert "AVX2, FMA and F16C" in (cpu_kernels.kernel_report().problem or "")


NOTHING_COMPILED = r"""
import json, sys
events = []
def audit(name, args):
    if name in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.system", "os.fork", "os.spawn"):
        events.append([name, str(args[:2])])
    if name == "ctypes.dlopen":
        events.append([name, str(args[0])])
    if name == "open" and args and str(args[0]).endswith(".so") and len(args) > 1 and "w" in str(args[1]):
        events.append([name, str(args[0])])
sys.addaudithook(audit)
import torch
from finserve.serving.inference.cpu_kernels import load_kernels, pack
kern = load_kernels()
blocked, scales = pack(torch.eye(16))
out = kern.linear(torch.arange(16.0)[None], blocked, scales, None)
print(json.dumps({"variant": kern.variant, "ok": bool(torch.allclose(out, torch.arange(16.0)[None])),
                  "events": events}))
"""


@needs_kernels
def test_loading_and_running_the_kernels_starts_no_process_and_writes_no_library(tmp_path: Path) -> None:
    """No compiler on PATH, CC unset: the kernels load and run; an audit hook sees no process started and only
    the installed extension opened."""
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "CXX")}
    env["PATH"] = str(bare)
    proc = subprocess.run(
        [sys.executable, "-P", "-c", NOTHING_COMPILED],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["variant"] == RUNNABLE[0] and report["ok"]
    opened = [e for e in report["events"] if e[0] == "ctypes.dlopen" and "_kernels" in e[1]]
    assert opened and all(e[1] == cpu_kernels.kernel_report().extension for e in opened)
    assert [e for e in report["events"] if e[0] != "ctypes.dlopen"] == []


def test_the_cli_reports_the_variant_and_fails_without_the_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    """`finserve model kernels`: what an image build runs to prove the wheel carried the kernels."""
    from typer.testing import CliRunner

    from finserve.cli import app

    result = CliRunner().invoke(app, ["model", "kernels"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["variant"] == (RUNNABLE[0] if RUNNABLE else None)
    assert shown["features"]["avx2"] == ("avx2" in cpu_kernels.cpu_flags())
    monkeypatch.setattr(cpu_kernels, "EXTENSION", "finserve.serving.inference._kernels_never_built")
    missing = CliRunner().invoke(app, ["model", "kernels"])
    assert missing.exit_code == 1 and "not installed" in missing.output


ENGINE_COMPILES_NOTHING = r"""
import asyncio, json, sys
events = []
def audit(name, args):
    if name in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.system", "os.fork"):
        events.append([name, str(args[:2])])
sys.addaudithook(audit)
from finserve.serving.inference import ChatMessage, CPUOptions, GenerationRequest, GeneratorConfig, build_engine
async def main():
    eng = build_engine(GeneratorConfig(model_dir=sys.argv[1], registry=sys.argv[2], max_new_tokens=4,
                                       cpu=CPUOptions(weights="int8", forward="lean", num_threads=1)))
    await eng.start()
    out = await eng.generate(GenerationRequest(messages=[ChatMessage(role="user", content="hello")], max_tokens=4))
    runner = eng.runner
    await eng.stop()
    return out.completion_tokens, runner.weights, runner.forward_path
tokens, weights, forward = asyncio.run(main())
from finserve.serving.inference.cpu_kernels import load_kernels
print(json.dumps({"tokens": tokens, "weights": weights, "forward": forward, "variant": load_kernels().variant,
                  "events": events}))
"""


@pytest.mark.slow
@needs_kernels
def test_a_cpu_engine_replica_serves_int8_with_no_compiler_and_starts_no_process(
    tmp_path: Path, model_dir: Path
) -> None:
    """The serving path of the default CPU engine (int8 weights, lean forward, C kernels) with no compiler on
    PATH and CC unset: it loads, answers, and an audit hook sees no process started (issue 21's target)."""
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "CXX", "FINSERVE_CPU_KERNELS")}
    env["PATH"] = str(bare)
    proc = subprocess.run(
        [sys.executable, "-P", "-c", ENGINE_COMPILES_NOTHING, str(model_dir), str(tmp_path / "reg")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"tokens": 4, "weights": "int8", "forward": "lean", "variant": RUNNABLE[0], "events": []}


# ---- GGUF blocks to int8 rows (model load) ----


def numpy_path(blocks: object, qtype: object) -> tuple[torch.Tensor, torch.Tensor]:
    """What the GGUF loader did before the C routine: the gguf package's dequantization, then quantize()."""
    import numpy as np
    from gguf import dequantize

    return quantize(torch.from_numpy(np.array(dequantize(blocks, qtype), dtype=np.float32)))


def same_bits(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> bool:
    return torch.equal(a[0], b[0]) and torch.equal(a[1].view(torch.int32), b[1].view(torch.int32))


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q8_0"])
@pytest.mark.parametrize("threads", [1, 3])
def test_gguf_blocks_become_the_int8_rows_and_scales_of_the_numpy_path(
    kern: CPUKernels, qtype: str, threads: int
) -> None:
    import numpy as np
    from gguf import GGMLQuantizationType
    from gguf import quantize as gguf_quantize

    kind = GGMLQuantizationType[qtype]
    rng = np.random.default_rng(7)
    # rows of very different scales, an all-zero row (the 1e-12 floor), a zero block, outliers, tiny values
    # (float16 subnormal block scales)
    weight = (rng.standard_normal((40, 160)) * rng.uniform(1e-3, 4.0, (40, 1))).astype(np.float32)
    weight[3] = 0
    weight[5, :32] = 0
    weight[7, 17] = 90.0
    weight[9] *= 1e-6
    blocks = gguf_quantize(weight, kind)
    torch.set_num_threads(threads)
    try:
        ours = kern.gguf_rows_int8(blocks, kind.value, 160)
    finally:
        torch.set_num_threads(1)
    assert same_bits(ours, numpy_path(blocks, kind))
    assert ours[1][3] == torch.tensor(1e-12, dtype=torch.float32) and not ours[0][3].any()


def test_gguf_rows_refuse_types_and_widths_they_cannot_read(kern: CPUKernels) -> None:
    import numpy as np

    with pytest.raises(ValueError, match="ggml type 12"):
        kern.gguf_rows_int8(np.zeros((2, 144), np.uint8), 12, 256)  # Q4_K: not read here
    with pytest.raises(ValueError, match="rows of 64 values"):
        kern.gguf_rows_int8(np.zeros((2, 34), np.uint8), 8, 64)  # 64 values are two Q8_0 blocks, not one
    with pytest.raises(ValueError, match="contiguous uint8"):
        kern.gguf_rows_int8(np.zeros((2, 68), np.uint8)[:, ::1].astype(np.int8), 8, 64)


def test_every_block_tensor_of_the_packaged_gguf_gives_the_numpy_path_s_bytes(kern: CPUKernels) -> None:
    """SmolLM2's Q4_1 matrices and its Q8_0 embedding (the tied lm_head's values): all 211, bit for bit."""
    from gguf import GGUFReader

    from finserve.serving.inference.base_model import gguf_path

    reader = GGUFReader(gguf_path())
    tensors = [t for t in reader.tensors if int(t.tensor_type) in cpu_kernels.GGUF_BLOCK_BYTES]
    assert {t.tensor_type.name for t in tensors} == {"Q4_1", "Q8_0"} and len(tensors) == 211
    for tensor in tensors:
        ours = kern.gguf_rows_int8(tensor.data, int(tensor.tensor_type), int(tensor.shape[0]))
        assert same_bits(ours, numpy_path(tensor.data, tensor.tensor_type)), tensor.name


# ---- the q4 kernel: the GGUF's Q4_0/Q4_1 blocks kept as they are ----


def q4_blocks(qtype: str, rows: int, cols: int, seed: int) -> tuple[Any, Any]:
    """(GGUF blocks of a random [rows, cols] matrix, their ``gguf`` dequantization as float32)."""
    import numpy as np
    from gguf import GGMLQuantizationType, dequantize
    from gguf import quantize as gguf_quantize

    kind = GGMLQuantizationType[qtype]
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((rows, cols)) * rng.uniform(1e-3, 2.0, (rows, 1))).astype(np.float32)
    weight[1] = 0  # an all-zero row: d = 0 blocks
    weight[2, :32] += 3.0  # an offset block (Q4_1's m far from -8 d)
    blocks = gguf_quantize(weight, kind)
    return blocks, np.array(dequantize(blocks, kind), dtype=np.float32)


def float_reference(x: torch.Tensor, w: Any, bias: torch.Tensor | None = None) -> torch.Tensor:
    out = x.double() @ torch.from_numpy(w).double().T
    return out if bias is None else out + bias.double()


def assert_float32_close(y: torch.Tensor, x: torch.Tensor, w: Any, bias: torch.Tensor | None = None) -> None:
    """Within float32 rounding of the exact product: the error bound scales with sum |x| |w| per output."""
    import numpy as np

    exact = float_reference(x, w, bias)
    scale = x.double().abs() @ torch.from_numpy(np.abs(w)).double().T + (
        0 if bias is None else bias.abs().double()
    )
    assert bool(((y.double() - exact).abs() <= 4e-6 * scale + 1e-30).all()), float(
        ((y.double() - exact).abs() / scale).max()
    )


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1"])
def test_q4_pack_keeps_the_file_s_values_bit_for_bit(kern: CPUKernels, qtype: str) -> None:
    import numpy as np

    from finserve.serving.inference.cpu_kernels import q4_unpack

    blocks, w = q4_blocks(qtype, 24, 96, 1)
    packed = kern.q4_pack(blocks, cpu_kernels.Q4_TYPES_BY_NAME[qtype], 96)
    assert packed.shape == (3, 3, 160) and packed.dtype == torch.uint8
    ours = q4_unpack(packed).numpy()
    # The same float32 values (Q4_0's exact d * (q - 8) as d * q + (-8 d): only a zero's sign may differ).
    assert np.array_equal(ours, w) and np.array_equal(ours.view(np.int32)[w != 0], w.view(np.int32)[w != 0])
    order = torch.randperm(24, generator=torch.Generator().manual_seed(0))
    moved = kern.q4_pack(blocks, cpu_kernels.Q4_TYPES_BY_NAME[qtype], 96, order)
    assert np.array_equal(q4_unpack(moved).numpy(), w[order.numpy()])  # whole rows moved


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1"])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 9, 13])
def test_q4_linear_matches_the_gguf_dequantized_matmul(kern: CPUKernels, qtype: str, rows: int) -> None:
    blocks, w = q4_blocks(qtype, 72, 160, rows)
    packed = kern.q4_pack(blocks, cpu_kernels.Q4_TYPES_BY_NAME[qtype], 160)
    torch.manual_seed(rows)
    x, bias = torch.randn(rows, 160), torch.randn(72)
    y = kern.linear_q4(x, packed, None)
    assert y.shape == (rows, 72) and y.dtype == torch.float32
    assert_float32_close(y, x, w)
    assert_float32_close(kern.linear_q4(x, packed, bias), x, w, bias)
    assert torch.equal(kern.linear_q4(x, packed, bias), y + bias)  # the bias is one float32 add


def test_q4_linear_gives_a_row_the_same_bits_whatever_its_batch_or_threads(kern: CPUKernels) -> None:
    blocks, _ = q4_blocks("Q4_1", 104, 192, 5)  # 13 groups: uneven slices over threads, 1x4 and 1x1 tiles
    packed = kern.q4_pack(blocks, 3, 192)
    torch.manual_seed(3)
    x, bias = torch.randn(11, 1, 192), torch.randn(104)
    batched = kern.linear_q4(x, packed, bias)
    assert batched.shape == (11, 1, 104)
    for i in range(11):
        assert torch.equal(kern.linear_q4(x[i : i + 1], packed, bias), batched[i : i + 1])
    for size in range(2, 11):
        assert torch.equal(kern.linear_q4(x[:size], packed, bias), batched[:size])
    before = torch.get_num_threads()
    try:
        for threads in (2, 3, 16):
            torch.set_num_threads(threads)
            assert torch.equal(kern.linear_q4(x, packed, bias), batched)
            assert torch.equal(kern.linear_q4(x[3:4], packed, bias), batched[3:4])
    finally:
        torch.set_num_threads(before)


def test_q4_linear_of_the_packaged_gguf_s_matrices(kern: CPUKernels) -> None:
    """SmolLM2's Q4_1 matrices of one layer, each shape once, against the ``gguf`` dequantization."""
    import numpy as np
    from gguf import GGUFReader, dequantize

    from finserve.serving.inference.base_model import gguf_path

    reader = GGUFReader(gguf_path())
    layer = [
        t
        for t in reader.tensors
        if t.name.startswith("blk.7.") and int(t.tensor_type) in cpu_kernels.Q4_TYPES
    ]
    assert len(layer) == 7
    torch.manual_seed(0)
    for tensor in layer:
        cols = int(tensor.shape[0])
        packed = kern.q4_pack(tensor.data, int(tensor.tensor_type), cols)
        w = np.array(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        x = torch.randn(9, cols)
        assert_float32_close(kern.linear_q4(x, packed, None), x, w)


def test_q4_kernels_refuse_sizes_and_types_they_cannot_take(kern: CPUKernels) -> None:
    import numpy as np

    blocks, _ = q4_blocks("Q4_1", 16, 64, 0)
    packed = kern.q4_pack(blocks, 3, 64)
    with pytest.raises(ValueError, match="in_features=64"):
        kern.linear_q4(torch.randn(2, 96), packed, None)
    with pytest.raises(ValueError, match="bias"):
        kern.linear_q4(torch.randn(2, 64), packed, torch.randn(8))
    with pytest.raises(ValueError, match="not q4_pack's"):
        kern.linear_q4(torch.randn(2, 64), packed.view(torch.int8), None)
    with pytest.raises(ValueError, match="not q4_pack's"):
        kern.linear_q4(torch.randn(2, 64), packed.reshape(2, -1), None)
    with pytest.raises(ValueError, match="not Q4_0 or Q4_1"):
        kern.q4_pack(np.zeros((8, 34), np.uint8), 8, 32)  # Q8_0 becomes int8 rows instead
    with pytest.raises(ValueError, match="rows of 96 values"):
        kern.q4_pack(blocks, 3, 96)
    with pytest.raises(ValueError, match="multiple of 8"):
        kern.q4_pack(blocks[:12], 3, 64)
    with pytest.raises(ValueError, match="row order"):
        kern.q4_pack(blocks, 3, 64, torch.arange(16) + 1)
    with pytest.raises(ValueError, match="order"):
        kern.q4_pack(blocks, 3, 64, torch.arange(8))


def test_q4_pack_refuses_a_q4_0_scale_whose_offset_overflows_float16(kern: CPUKernels) -> None:
    import numpy as np

    from finserve.serving.inference.cpu_kernels import Q4Overflow

    blocks, _ = q4_blocks("Q4_0", 8, 32, 0)
    blocks = blocks.copy()
    blocks[4, :2] = np.array([9000.0], np.float16).view(np.uint8)  # -8 * 9000 is past float16's 65504
    with pytest.raises(Q4Overflow):
        kern.q4_pack(blocks, 2, 32)
    blocks[4, :2] = np.array([8000.0], np.float16).view(np.uint8)  # -64000 fits
    packed = kern.q4_pack(blocks, 2, 32)
    assert float(cpu_kernels.q4_unpack(packed)[4].min()) == -64000.0
