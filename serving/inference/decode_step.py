"""A whole float32 decode step of a Llama model in one call to the C kernels (``finserve_decode_step``).

:class:`~.lean_forward.LeanLlama` runs a decode step as about 330 calls into :mod:`cpu_kernels` (seven
projections, two norms, attention and SiLU per layer), each with its own size checks and output tensor: about
10 us apiece, a third of a 135M model's step at batch 1. Here every size is checked once, when a batch
composition is first seen (:func:`build_program`), and the step is one call that runs the same kernels in the
same order: the base model's logits are bit for bit those of the per-call path. LoRA updates (one run of rows
per adapter, as :mod:`lora` plans them) are added in C, in float32, in an order of their own: within float32
rounding of torch's ``addmm_``, and a row's update never depends on the rest of its batch.

A program keeps references to every tensor it points at; it is rebuilt when adapters change (the lean forward
drops its programs then), never patched.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .cpu_kernels import BLOCK, CPUKernels, check_tensor

# The C side keeps one run's rank-sized intermediate on the stack.
MAX_RANK = 256
PROJECTIONS = ("q", "k", "v", "o", "gate", "up", "down")
_VARIANTS = {"avx2": 0, "avx512": 1}


class _Lora(ctypes.Structure):
    _fields_ = [
        ("a", ctypes.c_void_p),
        ("bt", ctypes.c_void_p),
        ("lo", ctypes.c_int64),
        ("hi", ctypes.c_int64),
        ("rank", ctypes.c_int64),
        ("scaling", ctypes.c_float),
    ]


class _Proj(ctypes.Structure):
    _fields_ = [
        ("w", ctypes.c_void_p),
        ("s", ctypes.c_void_p),
        ("bias", ctypes.c_void_p),
        ("lora", ctypes.POINTER(_Lora)),
        ("n", ctypes.c_int64),
        ("k", ctypes.c_int64),
        ("nlora", ctypes.c_int64),
        ("kind", ctypes.c_int64),
    ]


class _Layer(ctypes.Structure):
    _fields_ = [
        ("in_norm", ctypes.c_void_p),
        ("post_norm", ctypes.c_void_p),
        *((name, _Proj) for name in PROJECTIONS),
        ("in_eps", ctypes.c_float),
        ("post_eps", ctypes.c_float),
    ]


@dataclass(frozen=True)
class LoraRun:
    """Rows ``lo``..``hi`` get ``scaling * (x @ a.T) @ bt``: ``a`` [rank, in], ``bt`` [rank, out]."""

    lo: int
    hi: int
    a: torch.Tensor
    bt: torch.Tensor
    scaling: float


@dataclass(frozen=True)
class Projection:
    """An int8 projection as :func:`cpu_kernels.pack` lays it out (or, ``scales`` None, the 4-bit blocks of
    :meth:`cpu_kernels.CPUKernels.q4_pack`), and the LoRA runs on it for one batch."""

    qweight: torch.Tensor
    scales: torch.Tensor | None
    bias: torch.Tensor | None = None
    lora: tuple[LoraRun, ...] = ()


@dataclass(frozen=True)
class LayerWeights:
    """One decoder layer: its two RMSNorms and seven projections (keys of :data:`PROJECTIONS`)."""

    in_norm: torch.Tensor
    in_eps: float
    post_norm: torch.Tensor
    post_eps: float
    projections: dict[str, Projection]


@dataclass(frozen=True)
class Shape:
    """A Llama decoder's sizes: hidden, query heads, key/value heads, head dim, MLP width."""

    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int

    def io(self, projection: str) -> tuple[int, int]:
        """(out, in) features of a projection."""
        q, kv, e, i = (
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
            self.hidden,
            self.intermediate,
        )
        return {
            "q": (q, e),
            "k": (kv, e),
            "v": (kv, e),
            "o": (e, q),
            "gate": (i, e),
            "up": (i, e),
            "down": (e, i),
        }[projection]


@dataclass
class DecodeProgram:
    """Checked pointers to every layer's weights for one batch size; holds what they point at."""

    shape: Shape
    batch: int
    layers: Any  # ctypes array of _Layer
    count: int
    keep: list[Any] = field(default_factory=list)


def build_program(layers: Sequence[LayerWeights], shape: Shape, batch: int) -> DecodeProgram:
    """Check every tensor of ``layers`` against ``shape`` and ``batch`` and lay out the C structures.

    Raises ValueError for a tensor the C code would read out of bounds (wrong size, dtype, layout) or a LoRA
    run outside the batch: the step itself only checks the per-step tensors.
    """
    if batch < 1 or not layers:
        raise ValueError(f"a decode program needs a batch (got {batch}) and layers (got {len(layers)})")
    sizes = (shape.hidden, shape.head_dim, shape.intermediate)
    if any(s % BLOCK for s in sizes) or shape.heads % shape.kv_heads:
        raise ValueError(f"decode step: sizes {shape} do not fit the kernels")
    keep: list[Any] = []
    table = (_Layer * len(layers))()
    for i, layer in enumerate(layers):
        for name, norm in (("in_norm", layer.in_norm), ("post_norm", layer.post_norm)):
            check_tensor(norm, torch.float32, (shape.hidden,), f"layer {i} {name}")
        entry = table[i]
        entry.in_norm, entry.post_norm = layer.in_norm.data_ptr(), layer.post_norm.data_ptr()
        entry.in_eps, entry.post_eps = layer.in_eps, layer.post_eps
        keep += [layer.in_norm, layer.post_norm]
        missing = set(PROJECTIONS) - set(layer.projections)
        if missing:
            raise ValueError(f"layer {i} lacks projections {sorted(missing)}")
        for name in PROJECTIONS:
            setattr(
                entry,
                name,
                _projection(layer.projections[name], shape.io(name), batch, f"layer {i} {name}", keep),
            )
    return DecodeProgram(shape, batch, table, len(layers), keep)


def _projection(p: Projection, io: tuple[int, int], batch: int, where: str, keep: list[Any]) -> _Proj:
    out_features, in_features = io
    q4 = p.scales is None  # the q4 kernel's blocks (kind 1)
    if p.scales is None:
        if in_features % 32:
            raise ValueError(f"{where}: q4 blocks need in_features a multiple of 32, got {in_features}")
        check_tensor(
            p.qweight, torch.uint8, (out_features // BLOCK, in_features // 32, 160), f"{where} q4 weight"
        )
    else:
        check_tensor(p.qweight, torch.int8, (out_features, in_features), f"{where} weight")
        check_tensor(p.scales, torch.float32, (out_features,), f"{where} scales")
    if p.bias is not None:
        check_tensor(p.bias, torch.float32, (out_features,), f"{where} bias")
    runs = (_Lora * max(1, len(p.lora)))()
    for j, run in enumerate(p.lora):
        rank = run.a.shape[0] if run.a.dim() == 2 else -1
        if not 0 < rank <= MAX_RANK:
            raise ValueError(f"{where}: LoRA rank {rank} is outside 1..{MAX_RANK}")
        check_tensor(run.a, torch.float32, (rank, in_features), f"{where} lora A")
        check_tensor(run.bt, torch.float32, (rank, out_features), f"{where} lora B^T")
        if not 0 <= run.lo < run.hi <= batch:
            raise ValueError(f"{where}: LoRA rows {run.lo}..{run.hi} outside a batch of {batch}")
        runs[j] = _Lora(run.a.data_ptr(), run.bt.data_ptr(), run.lo, run.hi, rank, run.scaling)
        keep += [run.a, run.bt]
    keep += [p.qweight, p.scales, p.bias, runs]
    return _Proj(
        p.qweight.data_ptr(),
        None if p.scales is None else p.scales.data_ptr(),
        None if p.bias is None else p.bias.data_ptr(),
        runs,
        out_features,
        in_features,
        len(p.lora),
        1 if q4 else 0,
    )


def run(
    kern: CPUKernels,
    program: DecodeProgram,
    hidden: torch.Tensor,
    final_norm: torch.Tensor,
    final_eps: float,
    cos: torch.Tensor,
    signed_sin: torch.Tensor,
    positions: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    column: int,
    valid: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """Every layer of one decode step: ``hidden`` [batch, 1, hidden] (the embeddings; updated in place to the
    residual stream), keys/values [layers, batch, kv_heads, capacity, head_dim] written at ``column``;
    returns the final RMSNorm of the last hidden state [batch, 1, hidden] (the lm_head's input).

    ``positions`` [batch] index the rotary tables unchecked: the caller checks their range.
    """
    shape, batch = program.shape, program.batch
    layers, rows, kv_heads, capacity, head_dim = keys.shape
    if (layers, rows, kv_heads, head_dim) != (program.count, batch, shape.kv_heads, shape.head_dim):
        raise ValueError(f"decode step: a cache of {tuple(keys.shape)} for {program.count} layers of {shape}")
    if not 0 <= column < capacity:
        raise ValueError(f"decode step: column {column} is outside the cache's {capacity} columns")
    check_tensor(keys, torch.float32, tuple(keys.shape), "keys")
    check_tensor(values, torch.float32, tuple(keys.shape), "values")
    check_tensor(hidden, torch.float32, (batch, 1, shape.hidden), "hidden")
    check_tensor(final_norm, torch.float32, (shape.hidden,), "final norm")
    check_tensor(positions, torch.int64, (batch,), "positions")
    if cos.shape != signed_sin.shape or cos.dim() != 2 or cos.shape[1] != head_dim:
        raise ValueError(f"decode step: rotary tables of {tuple(cos.shape)} for head_dim {head_dim}")
    check_tensor(cos, torch.float32, tuple(cos.shape), "cos")
    check_tensor(signed_sin, torch.float32, tuple(cos.shape), "signed_sin")
    if valid is not None:
        check_tensor(valid, torch.uint8, (batch, column + 1), "valid")
    out = torch.empty_like(hidden)
    status = _function(kern.lib)(
        program.layers,
        program.count,
        _VARIANTS[kern.variant],
        hidden.data_ptr(),
        final_norm.data_ptr(),
        final_eps,
        out.data_ptr(),
        cos.data_ptr(),
        signed_sin.data_ptr(),
        positions.data_ptr(),
        keys.data_ptr(),
        values.data_ptr(),
        keys.stride(0),
        capacity,
        column,
        None if valid is None else valid.data_ptr(),
        scale,
        batch,
        shape.hidden,
        shape.heads,
        kv_heads,
        head_dim,
        shape.intermediate,
        kern.threads(),
    )
    if status == -1:
        raise MemoryError(f"decode step: no memory for a batch of {batch} over {column + 1} columns")
    if status:
        raise ValueError(
            "decode step: a projection the kernels cannot run"
        )  # build_program lets none through
    return out


@functools.cache
def _function(lib: ctypes.CDLL) -> Any:
    fn = lib.finserve_decode_step
    ptr, i64, f32, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
    fn.restype = ctypes.c_int
    fn.argtypes = [
        ctypes.POINTER(_Layer),
        i64,
        i32,
        ptr,
        ptr,
        f32,
        ptr,
        ptr,
        ptr,
        ptr,
        ptr,
        ptr,
        i64,
        i64,
        i64,
        ptr,
        f32,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i32,
    ]
    return fn
