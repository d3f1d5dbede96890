"""LoRA adapters served from PEFT's files without PEFT: read, placed on the model's modules, routed per row.

Importing PEFT brings transformers' modeling code with it (about 130 MB per replica), and serving needs
little of it: the adapter's ``lora_A``/``lora_B`` matrices, its scaling, and a per-row choice of adapter.
:func:`read_adapter` reads a PEFT LoRA folder (``adapter_config.json`` + ``adapter_model.safetensors``);
:func:`attach` wraps each module it targets in a :class:`LoraLinear` or :class:`LoraEmbedding` that keeps
the base module and every attached adapter by name; :func:`detach` removes one and unwraps modules left
without adapters. A wrapped module computes ``base(x) + scaling * (x @ A.T) @ B.T`` for the rows whose
adapter it holds, in runs of consecutive rows (:class:`Routing`, set once per forward); the lean forward
plans the same computation itself once per batch composition (:meth:`LoraModule.deltas`).

What PEFT's files can say that this does not compute is refused when the adapter loads
(:class:`UnsupportedAdapter`): DoRA, LoRA biases, ``modules_to_save``, fan-in-fan-out (GPT-2's Conv1D),
layer replication, trainable tokens and PEFT's other LoRA variants, and an adapter that carries full weights
of its own (an embedding saved with ``save_embedding_layers``: it would replace the base model's for every
adapter served beside it). rsLoRA, per-module ranks
(``rank_pattern``: each module's rank is its matrices' shape) and per-module alphas (``alpha_pattern``)
are computed as PEFT computes them.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from finserve.contracts import AdapterCorrupt

# PEFT's safetensors keys: base_model.model.<module path>.lora_A.weight (Linear) or .lora_embedding_A.
_KEY = re.compile(
    r"^base_model\.model\.(?P<module>.+)\.lora_(?P<kind>embedding_)?(?P<side>[AB])(?:\.weight)?$"
)
# Options whose truthy value asks for a computation this module does not do.
_REFUSED = (
    "use_dora",
    "fan_in_fan_out",
    "modules_to_save",
    "layer_replication",
    "trainable_token_indices",
    "lora_bias",
    "use_qalora",
    "use_bdlora",
    "alora_invocation_tokens",
    "arrow_config",
)


class UnsupportedAdapter(AdapterCorrupt):
    """The PEFT folder asks for something this engine does not compute (DoRA, biases, ...)."""


@dataclass(frozen=True)
class AdapterWeights:
    """One adapter's matrices per module path: (A [rank, in], B [out, rank], scaling), float32."""

    modules: dict[str, tuple[torch.Tensor, torch.Tensor, float]]


def read_adapter(folder: Path) -> AdapterWeights:
    """A PEFT LoRA folder's matrices and scalings. Raises UnsupportedAdapter or AdapterCorrupt."""
    from safetensors.torch import load_file

    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / "adapter_model.safetensors"))
    except Exception as exc:  # OSError, JSON or safetensors' own error for a malformed file
        raise AdapterCorrupt(f"adapter files in {folder} cannot be read: {exc}") from exc
    if config.get("peft_type") != "LORA":
        raise AdapterCorrupt(f"{folder}: peft_type is {config.get('peft_type')!r}, not LORA")
    for option in _REFUSED:
        if config.get(option):
            raise UnsupportedAdapter(f"{folder}: {option} adapters are not served by this engine")
    if config.get("bias", "none") != "none":
        raise UnsupportedAdapter(
            f"{folder}: LoRA biases (bias={config['bias']!r}) are not served by this engine"
        )
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        match = _KEY.match(key)
        if match is None:
            raise UnsupportedAdapter(f"{folder}: unexpected tensor {key!r} in the adapter weights")
        side = match["side"]
        # An embedding's LoRA is stored transposed ([rank, vocab] and [dim, rank]): the same two matrices.
        pairs.setdefault(match["module"], {})[side] = value.to(torch.float32)
    modules = {}
    alpha, rslora = float(config.get("lora_alpha", 8)), bool(config.get("use_rslora"))
    for module, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            raise AdapterCorrupt(f"{folder}: {module} lacks lora_A or lora_B")
        a, b = pair["A"], pair["B"]
        rank = a.shape[0] if a.dim() == 2 else 0  # a malformed A is refused below, not an IndexError
        if a.dim() != 2 or b.dim() != 2 or b.shape[1] != rank or rank == 0:
            raise AdapterCorrupt(
                f"{folder}: {module} has lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)}"
            )
        module_alpha = float(_pattern(config.get("alpha_pattern") or {}, module, alpha))
        modules[module] = (
            a.contiguous(),
            b.contiguous(),
            module_alpha / (math.sqrt(rank) if rslora else rank),
        )
    if not modules:
        raise AdapterCorrupt(f"{folder}: adapter_model.safetensors holds no LoRA tensors")
    return AdapterWeights(modules)


def _pattern(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's per-module override: the first key that matches the module path's end."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


@dataclass
class Routing:
    """Which adapter each batch row runs through, as runs of consecutive rows: (name, first, end).

    One per model; the runner sets it before a forward that goes through the modules' own ``forward``
    (the transformers forward). An empty routing runs every row on the base model.
    """

    runs: list[tuple[str | None, int, int]] = field(default_factory=list)

    def set_rows(self, rows: Sequence[str | None] | None) -> None:
        self.runs = [] if rows is None else runs_of(rows)


def runs_of(rows: Sequence[str | None]) -> list[tuple[str | None, int, int]]:
    """Consecutive rows with the same adapter: (name, first row, row after the last)."""
    runs: list[tuple[str | None, int, int]] = []
    for i, name in enumerate(rows):
        if runs and runs[-1][0] == name:
            runs[-1] = (name, runs[-1][1], i + 1)
        else:
            runs.append((name, i, i + 1))
    return runs


# (first row, end row, the whole batch?, A, B transposed, scaling) for one run of rows.
Delta = tuple[int, int, bool, torch.Tensor, torch.Tensor, float]


class LoraModule(nn.Module, ABC):
    """A base module and the adapters attached to it: ``lora_A[name]``, ``lora_B[name]``, ``scaling[name]``."""

    def __init__(self, base_layer: nn.Module, routing: Routing) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.routing = routing
        self.lora_A: dict[str, torch.Tensor] = {}
        self.lora_B: dict[str, torch.Tensor] = {}
        self.lora_B_t: dict[str, torch.Tensor] = {}
        self.scaling: dict[str, float] = {}

    def add(self, name: str, a: torch.Tensor, b: torch.Tensor, scaling: float) -> None:
        # B is kept transposed and contiguous (lora_B a view of it): the one-call decode step reads both
        # matrices row by row, and one copy of each is all there is.
        b_t = b.t().contiguous()
        self.lora_A[name], self.lora_B[name], self.scaling[name] = a.contiguous(), b_t.t(), scaling
        self.lora_B_t[name] = b_t

    def remove(self, name: str) -> None:
        for table in (self.lora_A, self.lora_B, self.lora_B_t, self.scaling):
            table.pop(name, None)

    def deltas(self, runs: Sequence[tuple[str | None, int, int]], rows: int) -> list[Delta]:
        return [
            (lo, hi, hi - lo == rows, self.lora_A[name], self.lora_B_t[name], self.scaling[name])
            for name, lo, hi in runs
            if name is not None and name in self.lora_A
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        return self.add_deltas(x, out, self.deltas(self.routing.runs, x.shape[0]))

    @abstractmethod
    def add_deltas(self, x: torch.Tensor, out: torch.Tensor, deltas: list[Delta]) -> torch.Tensor:
        """``out`` (the base module's output for ``x``) with each run's LoRA update added in place."""


class LoraLinear(LoraModule):
    """A Linear (plain, int8, q4 or packed) with LoRA updates added per run of rows."""

    def add_deltas(self, x: torch.Tensor, out: torch.Tensor, deltas: list[Delta]) -> torch.Tensor:
        for lo, hi, whole, a, b_t, scaling in deltas:
            part, xs = (out, x) if whole else (out[lo:hi], x[lo:hi])
            if xs.dtype != a.dtype:
                # A half-precision base: the update computed in float32, then added in the base's dtype
                # (what PEFT's per-row path does).
                part += (F.linear(F.linear(xs.to(a.dtype), a), b_t.t()) * scaling).to(part.dtype)
            else:
                part.view(-1, part.shape[-1]).addmm_(
                    F.linear(xs.reshape(-1, xs.shape[-1]), a), b_t, alpha=scaling
                )
        return out


class LoraEmbedding(LoraModule):
    """An input embedding (plain or kept in GGUF blocks) with LoRA updates: ``A.T[ids] @ B.T * scaling``."""

    def add_deltas(self, x: torch.Tensor, out: torch.Tensor, deltas: list[Delta]) -> torch.Tensor:
        for lo, hi, whole, a, b_t, scaling in deltas:
            part, ids = (out, x) if whole else (out[lo:hi], x[lo:hi])
            update = (F.embedding(ids, a.t()) @ b_t).mul_(scaling)
            part += update.to(part.dtype)
        return out

    @property
    def weight(self) -> Any:
        return self.base_layer.weight


def attach(model: nn.Module, routing: Routing, name: str, adapter: AdapterWeights) -> None:
    """Put ``adapter`` on ``model``'s modules under ``name`` (replacing an adapter of that name).

    Every module is checked before any is changed, so a mismatched adapter leaves the model as it was.
    """
    placed: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor, float]] = []
    for path, (a, b, scaling) in adapter.modules.items():
        try:
            module = model.get_submodule(path)
        except AttributeError:
            raise AdapterCorrupt(f"the model has no module {path!r} for adapter {name!r}") from None
        base = module.base_layer if isinstance(module, LoraModule) else module
        inputs, outputs = _io_sizes(base)
        if (a.shape[1], b.shape[0]) != (inputs, outputs):
            raise AdapterCorrupt(
                f"adapter {name!r}: {path} maps {a.shape[1]} -> {b.shape[0]} features, "
                f"the model's {inputs} -> {outputs}"
            )
        placed.append((path, module, a, b, scaling))
    detach(model, name)  # a module this version no longer targets must not keep the old one's matrices
    for path, _, a, b, scaling in placed:
        module = model.get_submodule(path)
        if not isinstance(module, LoraModule):
            wrapper_type = LoraLinear if isinstance(module, nn.Linear) else LoraEmbedding
            wrapper: LoraModule = wrapper_type(module, routing)
            _set_module(model, path, wrapper)
            module = wrapper
        assert isinstance(module, LoraModule)
        module.add(
            name, a.to(_float_dtype(module.base_layer)), b.to(_float_dtype(module.base_layer)), scaling
        )


def detach(model: nn.Module, name: str) -> None:
    """Remove adapter ``name`` from every module; modules left without adapters get their base back."""
    for path, module in list(model.named_modules()):
        if isinstance(module, LoraModule) and name in module.lora_A:
            module.remove(name)
            if not module.lora_A:
                _set_module(model, path, module.base_layer)


def adapter_names(model: nn.Module) -> set[str]:
    return {name for m in model.modules() if isinstance(m, LoraModule) for name in m.lora_A}


def _io_sizes(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    vocab, dim = getattr(module, "num_embeddings", None), getattr(module, "embedding_dim", None)
    if vocab is None or dim is None:
        raise AdapterCorrupt(f"LoRA on a {type(module).__name__} is not served by this engine")
    return vocab, dim


def _float_dtype(module: nn.Module) -> torch.dtype:
    """Adapters run in the base's dtype, except on a half-precision base (float32 there, as in PEFT)."""
    weight = getattr(module, "weight", None)
    dtype = torch.float32 if weight is None else weight.dtype
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)
