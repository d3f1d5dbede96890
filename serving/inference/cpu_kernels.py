"""C kernels for decode steps on x86-64 CPUs (AVX2 or AVX-512), built with the wheel, called through ctypes.

Two groups: weight-only matrix kernels (int8 rows, or the GGUF file's 4-bit blocks: every Linear of a
decode step), and the small
operations between the matrices of a Llama decode step (residual add + RMSNorm, rotary + KV-cache
write + attention, SiLU-and-multiply), each of which costs a dozen torch calls of a few
microseconds when the tensors hold a few hundred numbers. At load time, one more: GGUF blocks (Q4_0,
Q4_1, Q8_0) straight to the int8 rows and scales the matrix kernel reads (:meth:`CPUKernels.gguf_rows_int8`,
bit for bit what :func:`quantize` makes of the ``gguf`` package's dequantization; AVX2 in both variants).

The int8 kernel
---------------

torch's CPU wheel has no fast weight-only int8 GEMM without AVX-512 (``_weight_int8pack_mm`` is
about 10x slower than float32 here), and fbgemm's dynamic int8 quantizes the activations too
(per tensor, 7 bits on AVX2), which changes greedy output from the first token and makes a row's
result depend on the other rows of its batch. This kernel keeps activations in float32 and only
stores weights as int8 with one scale per output channel:

    y[m, n] = scale[n] * sum_k x[m, k] * q[n, k] (+ bias[n])

Every (m, n) is computed by the same sequence of float operations whatever the batch size, the
tile shape, the thread count or the variant (AVX2 or AVX-512), so a row decodes to the same tokens
alone or in any batch, on either kind of CPU. Prefill goes through it too (``fast_linear``): the
int8 weights are the only copy.

The q4 kernel
------------

A Linear the GGUF file stores as Q4_0 or Q4_1 blocks (32 values of 4 bits, a float16 scale ``d`` and, for
Q4_1, a float16 offset ``m``; Q4_0 is ``m = -8 d``) can keep those bits as its only copy
(:meth:`CPUKernels.q4_pack` at load, :meth:`CPUKernels.linear_q4`, ``fast_linear.Q4Linear``): 0.625 bytes
per weight read per token instead of int8's 1, and no second rounding of the file's values. Activations
stay float32 here too: per output and block, ``acc += d * dot + m * xsum`` with the 32 products and the
block's sum of ``x`` in one fixed order, so a row's result is the same alone or in any batch, tile or
thread count, and within float32 rounding of ``x @ dequantize(W).T``. The q4 kernel is AVX2 + FMA +
F16C code in both variants: there is no AVX-512 version of it (none could be tested).

The decode-step kernels
-----------------------
:mod:`lean_forward` calls them for float32 decode steps (one position per row); prefill and
other dtypes use torch. Where every projection is int8, the whole step (all layers, LoRA runs
included) is one call, ``finserve_decode_step`` (:mod:`decode_step`), running these same kernels in
the same order. They compute what transformers computes (RMSNorm in float32, rotary as
``x * cos + rotate_half(x) * sin``, softmax attention over the cached positions a row may see),
with summation orders of their own, so logits agree to float32 rounding, not bit for bit.

Building and choosing a variant
-------------------------------
The C source is ``csrc/cpu_kernels.c``, built by setup.py into ``_kernels.abi3.so`` beside this
module when the wheel (or an editable install) is built: a serving process never compiles
anything, and nothing here invokes a compiler. The library has no Python API (the build needs a C
compiler, not Python's headers); importlib finds it and ctypes opens it. It is compiled without
``-mavx2``/``-mavx512f``: each function names its instruction set with a target attribute, so the
one binary loads on any x86-64 CPU and the variant is picked here at run time from the CPU's flags
(:func:`choose_variant`, pure, on the flags :func:`cpu_flags` reads from ``/proc/cpuinfo``):

- ``avx512``: the int8 matrix kernel on 512-bit registers (two weight rows per register), for CPUs
  with AVX-512 F; bit for bit the same results as ``avx2``, with half the instructions.
- ``avx2``: AVX2 + FMA (+ F16C), the baseline; the decode-step glue kernels and the q4 kernel are AVX2 in
  both variants.
- none: no AVX2/FMA/F16C (or not x86-64), or no extension in this install: :func:`load_kernels`
  returns None with a warning naming the cause, and callers fall back to torch.

AVX-512 VNNI (and AVX-VNNI, AMX) are detected and reported but no variant uses them: they multiply
int8 by int8, and these kernels keep activations in float32 (see above); quantising activations
would change greedy output and tie a row's result to its batch. ``FINSERVE_CPU_KERNELS`` (``auto``,
``avx512``, ``avx2``, ``off``) overrides the choice, for comparisons; a variant the CPU lacks is
never run. The matrix and attention loops split over ``torch.get_num_threads()`` threads of the library's own
pool (pthreads, spinning briefly between calls, then sleeping), not OpenMP: libgomp stops spinning once a
second thread of the process runs parallel regions beside the main one, which the engine's decode thread
always is, and a decode step then paid a thread wake-up per matrix (csrc/cpu_kernels.c).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

log = logging.getLogger(__name__)

Variant = Literal["avx512", "avx2"]
VARIANTS: tuple[Variant, ...] = ("avx512", "avx2")  # preferred first
# The exported signatures this module binds (csrc/cpu_kernels.c, finserve_kernels_abi).
ABI = 6
EXTENSION = "finserve.serving.inference._kernels"

# Rows of the weight are stored in groups of 8, each group as [K/8][8 rows][8 values]: one 64-byte
# line per k-step, read front to back, which the hardware prefetcher follows (row-major int8 rows
# of 576 bytes, read 8 at a time, ran 35 % slower from DRAM).
BLOCK = 8


class CPUKernels:
    """The compiled kernels, callable on torch tensors (float32, contiguous, on the CPU).

    The C code reads and writes through raw pointers with the sizes it is given, so every method
    checks sizes, dtypes and contiguity first: a wrong tensor raises ValueError instead of reading
    or writing past its end. The checks are attribute reads only (about 25 us per layer of a
    SmolLM2 decode step, under a millisecond of its ~30 ms); ``qweight`` and ``scales`` are
    trusted to be what :func:`pack` returned.
    """

    def __init__(self, lib: ctypes.CDLL, variant: Variant, threaded: bool) -> None:
        ptr, i64, f32, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
        self._woq = _bind(
            getattr(lib, f"finserve_woq_int8_{variant}"),
            ptr,
            i64,
            ptr,
            ptr,
            ptr,
            ptr,
            i64,
            i64,
            i64,
            i64,
            i32,
        )
        self._add_rmsnorm = _bind(lib.finserve_add_rmsnorm, ptr, ptr, ptr, f32, ptr, i64, i64)
        self._rope_attend = _bind(
            lib.finserve_rope_attend,
            ptr,
            ptr,
            ptr,
            ptr,
            ptr,
            ptr,
            ptr,
            ptr,
            i64,
            i64,
            ptr,
            f32,
            ptr,
            i64,
            i64,
            i64,
            i64,
            i32,
        )
        self._rope_attend.restype = ctypes.c_int
        self._silu_mul = _bind(lib.finserve_silu_mul, ptr, ptr, i64)
        self._gguf_rows = _bind(lib.finserve_gguf_rows_int8, ptr, i32, i64, i64, ptr, ptr, i32)
        self._gguf_rows.restype = ctypes.c_int
        self.lib = lib  # decode_step binds its own function from it
        # The 4-bit kernel is AVX2 + FMA + F16C in both variants (no AVX-512 code of it: untestable here).
        self._woq_q4 = _bind(lib.finserve_woq_q4_avx2, ptr, i64, ptr, ptr, ptr, i64, i64, i64, i64, i32)
        self._woq_q4.restype = ctypes.c_int
        self._q4_pack = _bind(lib.finserve_q4_pack, ptr, i32, ptr, i64, i64, ptr, i32)
        self._q4_pack.restype = ctypes.c_int
        self.variant = variant
        self.threaded = threaded

    def threads(self) -> int:
        return torch.get_num_threads() if self.threaded else 1

    def linear(
        self, x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """``x @ W.T + bias`` for ``x`` of any leading shape, W given by :func:`pack`.

        Computed in float32; the result has ``x``'s dtype, as ``F.linear`` would give.
        """
        n, k = qweight.shape
        if x.shape[-1:] != (k,):
            raise ValueError(f"int8 linear: input of {tuple(x.shape)} does not end in in_features={k}")
        dtype = x.dtype
        if dtype != torch.float32 or not x.is_contiguous():
            x = x.float().contiguous()
        if bias is not None:
            if bias.numel() != n:
                raise ValueError(f"int8 linear: bias of {tuple(bias.shape)} for {n} outputs")
            if bias.dtype != torch.float32 or not bias.is_contiguous():
                bias = bias.float().contiguous()  # a float16/bfloat16 bias would be read as float32
        rows = x.numel() // k if k else 0
        out = torch.empty((*x.shape[:-1], n), dtype=torch.float32)
        if rows:
            self._woq(
                x.data_ptr(),
                k,
                qweight.data_ptr(),
                scales.data_ptr(),
                None if bias is None else bias.data_ptr(),
                out.data_ptr(),
                n,
                rows,
                n,
                k,
                self.threads(),
            )
        return out if dtype == torch.float32 or not dtype.is_floating_point else out.to(dtype)

    def linear_q4(self, x: torch.Tensor, qweight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``x @ W.T + bias`` for ``x`` of any leading shape, W given by :meth:`q4_pack` ([N/8, K/32, 160] uint8).

        Computed in float32 (activations are never quantized); the result has ``x``'s dtype, as ``F.linear``
        would give.
        """
        if qweight.dtype != torch.uint8 or qweight.dim() != 3 or qweight.shape[2] != Q4_GROUP_BYTES:
            raise ValueError(
                f"q4 linear: weights of {qweight.dtype} {tuple(qweight.shape)} are not q4_pack's"
            )
        if not qweight.is_contiguous() or not qweight.is_cpu:
            raise ValueError("q4 linear: weights must be a contiguous CPU tensor")
        n, k = qweight.shape[0] * BLOCK, qweight.shape[1] * Q4_BLOCK
        if x.shape[-1:] != (k,):
            raise ValueError(f"q4 linear: input of {tuple(x.shape)} does not end in in_features={k}")
        dtype = x.dtype
        if dtype != torch.float32 or not x.is_contiguous() or not x.is_cpu:
            x = x.float().contiguous().cpu()
        if bias is not None:
            if bias.numel() != n:
                raise ValueError(f"q4 linear: bias of {tuple(bias.shape)} for {n} outputs")
            if bias.dtype != torch.float32 or not bias.is_contiguous():
                bias = bias.float().contiguous()
        rows = x.numel() // k if k else 0
        out = torch.empty((*x.shape[:-1], n), dtype=torch.float32)
        if rows:
            status = self._woq_q4(
                x.data_ptr(),
                k,
                qweight.data_ptr(),
                None if bias is None else bias.data_ptr(),
                out.data_ptr(),
                n,
                rows,
                n,
                k,
                self.threads(),
            )
            if status:
                raise MemoryError(f"q4 linear: no memory for the block sums of {rows} rows")
        return out if dtype == torch.float32 or not dtype.is_floating_point else out.to(dtype)

    def q4_pack(self, blocks: Any, qtype: int, cols: int, order: torch.Tensor | None = None) -> torch.Tensor:
        """A GGUF Q4_0/Q4_1 matrix (uint8 [rows, bytes per row], e.g. the file's memory map) in the layout
        :meth:`linear_q4` reads: uint8 [rows/8, cols/32, 160], the same 4-bit values and float16 scales.

        ``order``: int64 [rows], the source row of each output row (Llama's q/k permutation moves whole
        rows); None keeps the file's order. Raises :class:`Q4Overflow` when a Q4_0 block's ``-8 d`` does not
        fit in float16 (keep that tensor as int8 rows), ValueError for other types or sizes.
        """
        per_block = Q4_TYPES.get(int(qtype))
        source = np.asarray(blocks)
        rows = source.shape[0] if source.ndim == 2 else 0
        if per_block is None:
            raise ValueError(f"q4_pack: ggml type {qtype} is not Q4_0 or Q4_1")
        if (
            cols <= 0
            or cols % Q4_BLOCK
            or source.ndim != 2
            or source.shape[1] != cols // Q4_BLOCK * per_block
        ):
            raise ValueError(f"q4_pack: blocks of {tuple(source.shape)} for rows of {cols} values")
        if rows % BLOCK or rows == 0:
            raise ValueError(f"q4_pack: {rows} rows is not a positive multiple of {BLOCK}")
        if source.dtype != np.uint8 or not source.flags.c_contiguous:
            raise ValueError("q4_pack: blocks must be a contiguous uint8 array")
        if order is not None:
            check_tensor(order, torch.int64, rows, "order")
            if rows and (int(order.min()) < 0 or int(order.max()) >= rows):
                raise ValueError(f"q4_pack: row order outside 0..{rows - 1}")
        out = torch.empty((rows // BLOCK, cols // Q4_BLOCK, Q4_GROUP_BYTES), dtype=torch.uint8)
        status = self._q4_pack(
            source.ctypes.data,
            int(qtype),
            None if order is None else order.data_ptr(),
            rows,
            cols,
            out.data_ptr(),
            self.threads(),
        )
        if status == -3:
            raise Q4Overflow("q4_pack: a Q4_0 block's -8 * scale overflows float16")
        if status:
            raise ValueError(f"q4_pack: the kernel refused type {qtype} for {rows}x{cols} ({status})")
        return out

    def add_rmsnorm(
        self, hidden: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, eps: float
    ) -> torch.Tensor:
        """``hidden += delta`` in place (when given), then RMSNorm of ``hidden`` times ``weight``."""
        dim = hidden.shape[-1]
        size = hidden.numel()
        if dim % BLOCK:
            raise ValueError(f"add_rmsnorm: width {dim} is not a multiple of {BLOCK}")
        check_tensor(hidden, torch.float32, size, "hidden")
        check_tensor(weight, torch.float32, dim, "weight")
        if delta is not None:
            check_tensor(delta, torch.float32, size, "delta")
        out = torch.empty_like(hidden)
        self._add_rmsnorm(
            hidden.data_ptr(),
            None if delta is None else delta.data_ptr(),
            weight.data_ptr(),
            eps,
            out.data_ptr(),
            hidden.numel() // dim,
            dim,
        )
        return out

    def rope_attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        cos: torch.Tensor,
        signed_sin: torch.Tensor,
        positions: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        column: int,
        valid: torch.Tensor | None,
        scale: float,
        heads: int,
    ) -> torch.Tensor:
        """Rotary on q and k, k and v written to cache column ``column``, attention over columns 0..column.

        ``keys``/``values`` are one layer's cache [batch, kv_heads, capacity, head_dim]; ``valid``
        [batch, column + 1] uint8 (None: every column). Returns [batch, 1, heads * head_dim].
        """
        batch, kv_heads, capacity, head_dim = keys.shape
        if not 0 <= column < capacity:
            raise ValueError(f"rope_attend: column {column} is outside the cache's {capacity} columns")
        if head_dim % BLOCK or heads % kv_heads:
            raise ValueError(
                f"rope_attend: head_dim {head_dim} / {heads} heads over {kv_heads} key-value heads"
            )
        if cos.shape[-1] != head_dim:
            raise ValueError(f"rope_attend: rotary rows of {cos.shape[-1]} values for head_dim {head_dim}")
        cache = keys.numel()
        check_tensor(keys, torch.float32, cache, "keys")
        check_tensor(values, torch.float32, cache, "values")
        check_tensor(q, torch.float32, batch * heads * head_dim, "q")
        check_tensor(k, torch.float32, batch * kv_heads * head_dim, "k")
        check_tensor(v, torch.float32, batch * kv_heads * head_dim, "v")
        check_tensor(cos, torch.float32, cos.numel(), "cos")
        check_tensor(signed_sin, torch.float32, cos.numel(), "signed_sin")
        check_tensor(positions, torch.int64, batch, "positions")
        if valid is not None:
            check_tensor(valid, torch.uint8, batch * (column + 1), "valid")
        # The rotary rows are read at positions[b] unchecked: callers check the range once per step
        # (a reduction per layer would cost more than the rest of these checks together).
        out = torch.empty((batch, 1, heads * head_dim), dtype=torch.float32)
        status = self._rope_attend(
            q.data_ptr(),
            k.data_ptr(),
            v.data_ptr(),
            cos.data_ptr(),
            signed_sin.data_ptr(),
            positions.data_ptr(),
            keys.data_ptr(),
            values.data_ptr(),
            capacity,
            column,
            None if valid is None else valid.data_ptr(),
            scale,
            out.data_ptr(),
            batch,
            heads,
            kv_heads,
            head_dim,
            self.threads(),
        )
        if status:
            raise MemoryError(f"rope_attend: no memory for the scores of {column + 1} columns")
        return out

    def silu_mul(self, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """``silu(gate) * up``, written into ``gate``."""
        size = gate.numel()
        if size % BLOCK:
            raise ValueError(f"silu_mul: {size} values is not a multiple of {BLOCK}")
        check_tensor(gate, torch.float32, size, "gate")
        check_tensor(up, torch.float32, size, "up")
        self._silu_mul(gate.data_ptr(), up.data_ptr(), gate.numel())
        return gate

    def gguf_rows_int8(self, blocks: Any, qtype: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
        """GGUF blocks of a [rows, cols] matrix (uint8 [rows, bytes per row]) as :func:`quantize` gives them.

        ``qtype`` is the ggml type id (:data:`GGUF_BLOCK_BYTES`). The int8 rows (row-major) and scales are
        bit for bit those of :func:`quantize` on the ``gguf`` package's dequantization, without a float32
        copy of the matrix.
        """
        per_block = GGUF_BLOCK_BYTES.get(int(qtype))
        if per_block is None:
            raise ValueError(f"gguf_rows_int8: ggml type {qtype} is not one of {sorted(GGUF_BLOCK_BYTES)}")
        # A numpy view of the file's memory map (read-only: torch would warn), read through its pointer.
        source = np.asarray(blocks)
        rows = source.shape[0] if source.ndim == 2 else 0
        if cols <= 0 or cols % 32 or source.ndim != 2 or source.shape[1] != cols // 32 * per_block:
            raise ValueError(f"gguf_rows_int8: blocks of {tuple(source.shape)} for rows of {cols} values")
        if source.dtype != np.uint8 or not source.flags.c_contiguous:
            raise ValueError("gguf_rows_int8: blocks must be a contiguous uint8 array")
        q = torch.empty((rows, cols), dtype=torch.int8)
        scales = torch.empty(rows, dtype=torch.float32)
        status = self._gguf_rows(
            source.ctypes.data, int(qtype), rows, cols, q.data_ptr(), scales.data_ptr(), self.threads()
        )
        if status:
            raise MemoryError(f"gguf_rows_int8: no memory for a row of {cols} values")
        return q, scales


# ggml type id -> bytes of one 32-value block, for the block types gguf_rows_int8 reads.
GGUF_BLOCK_BYTES = {2: 18, 3: 20, 8: 34}  # Q4_0, Q4_1, Q8_0
# The block types the q4 kernel keeps as they are (ggml type id -> bytes of one block).
Q4_TYPES = {2: 18, 3: 20}  # Q4_0, Q4_1
Q4_TYPES_BY_NAME = {"Q4_0": 2, "Q4_1": 3}
Q4_BLOCK = 32  # values per GGUF block
# Bytes per (8-row group, 32-value block) in q4_pack's layout: 8 float16 d, 8 float16 m, 8 x 16 nibble bytes.
Q4_GROUP_BYTES = 160


class Q4Overflow(ValueError):
    """A Q4_0 tensor whose ``-8 * d`` is not a float16: the q4 layout cannot hold it."""


def q4_packable(out_features: int, in_features: int) -> bool:
    return out_features > 0 and in_features > 0 and out_features % BLOCK == 0 and in_features % Q4_BLOCK == 0


def q4_unpack(packed: torch.Tensor) -> torch.Tensor:
    """The float32 matrix [N, K] a :meth:`CPUKernels.q4_pack` layout holds: ``d * q + m`` per value, each
    product and sum rounded to float32 (what the ``gguf`` package's dequantization gives, bit for bit, for
    Q4_1, and for Q4_0's ``d * (q - 8)``, whose terms are exact). Tests and debugging."""
    groups, blocks, _ = packed.shape
    raw = packed.numpy()
    d = raw[:, :, 0:16].copy().view(np.float16).astype(np.float32)  # [G, B, 8 rows]
    m = raw[:, :, 16:32].copy().view(np.float16).astype(np.float32)
    nib = raw[:, :, 32:].reshape(groups, blocks, 16, BLOCK)  # [G, B, byte i, row]
    q = np.concatenate([nib & 15, nib >> 4], axis=2).astype(np.float32)  # [G, B, value 0..31, row]
    w = d[:, :, None, :] * q + m[:, :, None, :]
    return torch.from_numpy(
        np.ascontiguousarray(w.transpose(0, 3, 1, 2).reshape(groups * BLOCK, blocks * Q4_BLOCK))
    )


def _bind(fn: Any, *argtypes: Any) -> Any:
    fn.restype = None
    fn.argtypes = list(argtypes)
    return fn


def check_tensor(t: torch.Tensor, dtype: torch.dtype, size: int | tuple[int, ...], name: str) -> None:
    """Raise unless ``t`` is a contiguous CPU tensor of ``dtype`` and ``size``: a shape, or a number of values
    (where the kernel reads a flat buffer). The kernels read what they are given unchecked: this is the check."""
    fits = tuple(t.shape) == size if isinstance(size, tuple) else t.numel() == size
    if t.dtype != dtype or not fits or not t.is_contiguous() or not t.is_cpu:
        wanted = str(size) if isinstance(size, tuple) else f"{size} values"
        raise ValueError(
            f"{name}: need a contiguous CPU {dtype} tensor of {wanted}, got {t.dtype} "
            f"{tuple(t.shape)}{'' if t.is_contiguous() else ' non-contiguous'} on {t.device}"
        )


def packable(out_features: int, in_features: int) -> bool:
    return out_features > 0 and in_features > 0 and out_features % BLOCK == 0 and in_features % BLOCK == 0


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: ``weight ~= q * scale[:, None]`` with q in [-127, 127]."""
    w = weight.detach().float()
    scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    q = torch.round(w / scales[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scales.contiguous()


def pack(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize ``weight`` [N, K] and lay it out for the kernel: (blocked int8, float32 scales [N])."""
    n, k = weight.shape
    if not packable(n, k):
        raise ValueError(f"int8 packing needs both dimensions divisible by {BLOCK}, got {n}x{k}")
    q, scales = quantize(weight)
    return block_rows(q), scales


def block_rows(q: torch.Tensor) -> torch.Tensor:
    """Row-major int8 [N, K] in the kernel's layout (8-row groups, :data:`BLOCK`): the inverse of :func:`unpack`."""
    n, k = q.shape
    return q.view(n // BLOCK, BLOCK, k // BLOCK, BLOCK).permute(0, 2, 1, 3).contiguous().view(n, k)


def unpack(blocked: torch.Tensor) -> torch.Tensor:
    """The row-major int8 matrix of a blocked one (tests and debugging)."""
    n, k = blocked.shape
    return blocked.view(n // BLOCK, k // BLOCK, BLOCK, BLOCK).permute(0, 2, 1, 3).reshape(n, k)


# ---- the CPU's features and the variant they allow (pure, on cpuinfo text) ----

# /proc/cpuinfo flag names (Linux clears the AVX-512 ones when the kernel does not save their state).
REPORTED_FEATURES = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_int8",
)


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The ``flags`` of the first processor in a /proc/cpuinfo text (empty when there is none)."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def runnable_variants(flags: frozenset[str], machine: str) -> list[Variant]:
    """The variants a CPU with these flags can run, preferred first (AVX2, FMA and F16C are the minimum:
    the q4 kernel converts float16 scales with F16C, which every AVX2 CPU has)."""
    if machine.lower() not in ("x86_64", "amd64") or not {"avx2", "fma", "f16c"} <= flags:
        return []
    return [*(["avx512"] if "avx512f" in flags else []), "avx2"]  # type: ignore[list-item]


def choose_variant(flags: frozenset[str], machine: str, requested: str = "auto") -> Variant | None:
    """The kernel variant for a CPU with these flags: the requested one if it can run, else the best.

    ``requested``: ``auto`` (best), ``avx512``, ``avx2`` or ``off`` (None). Unknown values raise.
    """
    if requested not in ("auto", "off", *VARIANTS):
        raise ValueError(f"FINSERVE_CPU_KERNELS={requested!r}: expected auto, off, {', '.join(VARIANTS)}")
    runnable = runnable_variants(flags, machine)
    if requested == "off" or not runnable:
        return None
    if requested != "auto" and requested not in runnable:
        log.warning(
            "CPU kernels: FINSERVE_CPU_KERNELS=%s needs a CPU flag this one lacks; using %s",
            requested,
            runnable[0],
        )
    return requested if requested in runnable else runnable[0]


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    try:
        return parse_cpu_flags(cpuinfo.read_text())
    except OSError:
        return frozenset()


def requested_variant() -> str:
    return os.environ.get("FINSERVE_CPU_KERNELS", "auto").strip().lower() or "auto"


@dataclass(frozen=True)
class KernelReport:
    """What this process would run: the CPU, its relevant flags, the variant and why not, if none."""

    machine: str
    features: dict[str, bool]
    variant: Variant | None
    extension: str | None  # the module's file, None when it is not installed
    threads: bool  # the parallel loops can use more than one thread (the pool is built)
    problem: str | None  # why the kernels do not run here (None: they do)


def cpu_supported() -> bool:
    """x86-64 with AVX2, FMA and F16C (from /proc/cpuinfo): the kernels' minimum."""
    return choose_variant(cpu_flags(), platform.machine()) is not None


def _extension() -> tuple[ctypes.CDLL | None, str | None, str | None]:
    """(library, its file, None) or (None, file or None, why it cannot be used).

    The library uses no Python API (it has no module init): importlib only finds its file, ctypes opens it.
    """
    try:
        spec = importlib.util.find_spec(EXTENSION)
    except ImportError:
        spec = None
    if spec is None or not spec.origin:
        return (
            None,
            None,
            (
                f"the compiled library {EXTENSION} is not installed; this install was built without a C compiler: "
                "install gcc and reinstall the package (pip install ., or pip install -e . for a checkout) to build it"
            ),
        )
    path = spec.origin
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:  # e.g. built for another libc
        return None, path, f"{path} cannot be loaded: {exc}"
    if not hasattr(lib, "finserve_woq_int8_avx2"):
        return (
            None,
            path,
            f"{path} has no kernels (built for {platform.machine()}, which they do not support)",
        )
    abi = lib.finserve_kernels_abi()
    if abi != ABI:
        return (
            None,
            path,
            f"{path} is a stale build (ABI {abi}, this code needs {ABI}): reinstall the package",
        )
    return lib, path, None


def kernel_report(requested: str | None = None) -> KernelReport:
    """The CPU's features and what :func:`load_kernels` would choose (nothing is cached)."""
    machine = platform.machine()
    flags = cpu_flags()
    variant = choose_variant(flags, machine, requested or requested_variant())
    lib, path, problem = _extension()
    if variant is None and problem is None:
        problem = (
            "FINSERVE_CPU_KERNELS=off"
            if (requested or requested_variant()) == "off"
            else f"the kernels need an x86-64 CPU with AVX2, FMA and F16C ({machine})"
        )
    threads = bool(lib is not None and lib.finserve_kernels_threads())
    return KernelReport(
        machine, {name: name in flags for name in REPORTED_FEATURES}, variant, path, threads, problem
    )


def open_kernels(variant: Variant) -> CPUKernels:
    """The kernels of one variant; raises RuntimeError when the extension is missing or the CPU lacks it."""
    if variant not in runnable_variants(cpu_flags(), platform.machine()):
        raise RuntimeError(f"this CPU cannot run the {variant} kernels")
    lib, _, problem = _extension()
    if lib is None:
        raise RuntimeError(problem)
    return CPUKernels(lib, variant, bool(lib.finserve_kernels_threads()))


@functools.cache
def load_kernels() -> CPUKernels | None:
    """The kernels of the best variant this CPU runs (once per process); None, with a warning, where none can.

    Only imports the extension built with the package: nothing is compiled or written.
    """
    report = kernel_report()
    if report.problem is not None or report.variant is None:
        log.warning("CPU kernels unavailable, serving without them (slower): %s", report.problem)
        return None
    kernels = open_kernels(report.variant)
    log.info(
        "CPU kernels: %s variant (%s), threads %s",
        report.variant,
        ", ".join(name for name, present in report.features.items() if present) or "no listed features",
        "on" if kernels.threaded else "off",
    )
    return kernels
