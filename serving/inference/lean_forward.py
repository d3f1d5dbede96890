"""A lean forward pass for Llama-family models: the model's modules, without transformers' glue.

A decode step of SmolLM2-135M through ``LlamaForCausalLM.forward`` makes about 3,000 torch calls
(mask building, cache bookkeeping, rotary per layer, output dataclasses); on this CPU those cost
as much as reading the weights. :class:`LeanLlama` runs the same computation from the same
modules in about 1,000: the embedding, every projection (``q_proj`` ... ``down_proj`` and
``lm_head``, so packed/int8 linears run unchanged), the RMSNorm weights
and the rotary table computed once by the model's own ``rotary_emb``. Attention is
``scaled_dot_product_attention`` over a preallocated :class:`KVCache` that grows in chunks
instead of concatenating every step. The output is the logits of the last position only.

Float32 decode steps (one position per row) go further when the C kernels of
:mod:`cpu_kernels` are available: residual add + RMSNorm, rotary + cache write + attention and
SiLU-and-multiply are one call each, so a layer costs 11 calls (7 of them the projections).
Prefill, other dtypes and machines without the kernels use the torch operations.

The model is transformers' ``LlamaForCausalLM`` or our tree of the same modules (:mod:`llama_model`,
built from a GGUF without importing transformers).

LoRA: ``rows=None`` runs the modules as they are (no adapter attached, or each module's own routing).
``rows`` (one adapter name per batch row, None for the base model) routes each row through its own
adapter: the adapters are :mod:`lora`'s modules wrapped around the base ones, and what each module
computes for a batch composition (its base, plus one ``addmm_`` per run of consecutive rows sharing an
adapter it holds) is planned once and reused at every step and layer.
Tests check all of it against transformers' ``model.forward`` and PEFT (same logits, same greedy tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from . import decode_step
from .cpu_kernels import CPUKernels, load_kernels
from .decode_step import LayerWeights, LoraRun, Projection, Shape
from .fast_linear import Int8Linear, Q4Linear
from .lora import LoraModule, runs_of

# Rope types whose cos/sin table does not depend on the sequence length (dynamic ones do).
_STATIC_ROPE = frozenset({"default", "linear", "llama3", "yarn"})
# Batch compositions whose routing plans are kept (a few adapters and batch sizes make far fewer).
_MAX_PLANS = 256


def unsupported_reason(model: nn.Module) -> str | None:
    """Why :class:`LeanLlama` cannot run ``model`` (None when it can)."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) != "llama":
        return f"model type {getattr(config, 'model_type', None)!r} is not llama"
    rope = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope not in _STATIC_ROPE:
        return f"rope type {rope!r} depends on the sequence length"
    if getattr(config, "sliding_window", None):
        return "sliding-window attention"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "rotary_emb"):
        return "not a LlamaForCausalLM layout"
    return None


class KVCache:
    """Keys and values of every layer, [layers, batch, kv_heads, capacity, head_dim], written in place.

    ``length`` columns are filled; :meth:`reserve` grows the capacity by at least ``grow``
    columns at a time (one copy per ``grow`` steps instead of one concatenation per step).
    """

    def __init__(
        self, layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype, grow: int = 128
    ) -> None:
        self.layers, self.kv_heads, self.head_dim, self.dtype, self.grow = (
            layers,
            kv_heads,
            head_dim,
            dtype,
            grow,
        )
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.length = 0

    @property
    def capacity(self) -> int:
        return 0 if self.keys is None else self.keys.shape[3]

    def reserve(self, batch: int, columns: int) -> None:
        """Make room for ``columns`` more positions."""
        need = self.length + columns
        if self.keys is not None and need <= self.capacity:
            return
        shape = (self.layers, batch, self.kv_heads, need + self.grow, self.head_dim)
        keys, values = torch.empty(shape, dtype=self.dtype), torch.empty(shape, dtype=self.dtype)
        if self.keys is not None and self.values is not None and self.length:
            keys[:, :, :, : self.length] = self.keys[:, :, :, : self.length]
            values[:, :, :, : self.length] = self.values[:, :, :, : self.length]
        self.keys, self.values = keys, values

    def load_prefix(
        self, batch: int, columns: int, rows: Sequence[tuple[torch.Tensor, torch.Tensor] | None], extra: int
    ) -> None:
        """Start an empty cache with ``columns`` filled: row ``r``'s cached keys and values
        [layers, kv_heads, n, head_dim] right-aligned in them (None: nothing cached), and room for
        ``extra`` more."""
        self.begin(batch, columns, extra)
        for r, row in enumerate(rows):
            self.put_row(r, [] if row is None else [row])

    def begin(self, batch: int, columns: int, extra: int) -> None:
        """Start an empty cache of ``batch`` rows with ``columns`` counted as filled (rows written by
        :meth:`put_row`) and room for ``extra`` more."""
        if self.length:
            raise RuntimeError("a cache is begun empty")
        self.keys = self.values = None
        self.reserve(batch, columns + extra)
        self.length = columns

    def put_row(self, row: int, pieces: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Row ``row``'s keys and values, the ``pieces`` [layers, kv_heads, n, head_dim] one after another,
        right-aligned in the filled columns; the columns to their left zeroed (masked out, but 0 * NaN of
        uninitialised memory would still poison the attention)."""
        assert self.keys is not None and self.values is not None
        column = self.length - sum(keys.shape[2] for keys, _ in pieces)
        if column < 0:
            raise ValueError(f"row {row}: {self.length - column} positions for {self.length} columns")
        self.keys[:, row, :, :column] = 0
        self.values[:, row, :, :column] = 0
        for keys, values in pieces:
            n = keys.shape[2]
            self.keys[:, row, :, column : column + n] = keys
            self.values[:, row, :, column : column + n] = values
            column += n

    def batch_select_indices(self, index: torch.Tensor) -> None:
        """Keep only the batch rows in ``index`` (rows that finished leave the batch)."""
        if self.keys is not None and self.values is not None:
            self.keys = self.keys.index_select(1, index)
            self.values = self.values.index_select(1, index)


class LeanLlama:
    """Forward passes of a LlamaForCausalLM (adapters may be attached to its modules, before or after)."""

    def __init__(self, model: nn.Module, kernels: CPUKernels | None = None, one_call: bool = True) -> None:
        """``kernels``: the C kernels for float32 decode steps (None: torch operations only); ``one_call``: a
        decode step of int8 projections as one call (:mod:`decode_step`), else a call per operation."""
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"LeanLlama cannot run this model: {reason}")
        self.model = model
        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.dtype = model.model.embed_tokens.weight.dtype
        positions = int(getattr(config, "max_position_embeddings", 2048))
        probe = torch.zeros(1, dtype=self.dtype)
        with torch.no_grad():
            cos, sin = model.model.rotary_emb(probe, torch.arange(positions).unsqueeze(0))
        half = self.head_dim // 2
        # rotate_half(x) * sin == roll(x, half) * signed_sin, one op instead of four.
        self._cos = cos[0].contiguous()  # [positions, head_dim]
        self._sin = torch.cat((-sin[0, :, :half], sin[0, :, half:]), dim=-1).contiguous()
        self._half = half
        # tuple(rows) -> id(module) -> what computes it for that batch (see _router); cleared by adapters_changed.
        self._plans: dict[tuple[str | None, ...], dict[int, Any]] = {}
        # (rows, batch) -> the one-call decode step's checked weights (None: some module needs the per-call path).
        self._programs: dict[tuple[tuple[str | None, ...] | None, int], decode_step.DecodeProgram | None] = {}
        fits = self.dtype == torch.float32 and config.hidden_act == "silu" and self.head_dim % 8 == 0
        fits = fits and config.intermediate_size % 8 == 0
        self._kernels = kernels if fits and config.hidden_size % 8 == 0 else None
        self.one_call = one_call

    @classmethod
    def with_kernels(cls, model: nn.Module) -> LeanLlama:
        """A LeanLlama using the C kernels where they can be built."""
        return cls(model, load_kernels())

    def new_cache(self) -> KVCache:
        return KVCache(len(self.model.model.layers), self.kv_heads, self.head_dim, self.dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: KVCache,
        rows: Sequence[str | None] | None = None,
    ) -> torch.Tensor:
        """Logits [batch, vocab] of the last position.

        ``attention_mask`` [batch, cache.length + steps] marks real tokens (1) and left padding (0);
        ``rows``: each row's adapter name (None: the base model), or None to run the modules
        as they are.
        """
        batch, steps = input_ids.shape
        start = cache.length
        cache.reserve(batch, steps)
        call = self._router(rows)
        if steps == 1 and self._kernels is not None:
            return self._decode_step(
                self._kernels, input_ids, attention_mask, position_ids, cache, call, rows
            )
        inner = self.model.model
        hidden = self._layers(
            call(inner.embed_tokens, input_ids),  # routed too: an adapter may target the embedding
            self._mask(attention_mask, steps, start),
            position_ids,
            cache,
            call,
            len(inner.layers),
        )
        norm = inner.norm
        last = F.rms_norm(hidden[:, -1:], norm.weight.shape, norm.weight, norm.variance_epsilon)
        return call(self.model.lm_head, last)[:, 0]

    def states(
        self, input_ids: torch.Tensor, layers: int, rows: Sequence[str | None] | None = None
    ) -> torch.Tensor:
        """Hidden states [batch, steps, hidden] after the first ``layers`` decoder layers, through the model's
        final RMSNorm: what a head reading layer ``layers`` sees (the intent head; transformers' ``LlamaModel``
        stopped there gives the same). Causal mask only: right padding never reaches a real token."""
        inner = self.model.model
        if not 0 < layers <= len(inner.layers):
            raise ValueError(f"layers must be 1..{len(inner.layers)}, not {layers}")
        batch, steps = input_ids.shape
        cache = KVCache(layers, self.kv_heads, self.head_dim, self.dtype, grow=0)  # the layers run, no more
        cache.reserve(batch, steps)
        call = self._router(rows)
        positions = torch.arange(steps).unsqueeze(0).expand(batch, steps)
        mask = self._mask(torch.ones(batch, steps, dtype=torch.long), steps, 0)
        hidden = self._layers(call(inner.embed_tokens, input_ids), mask, positions, cache, call, layers)
        norm = inner.norm
        return F.rms_norm(hidden, norm.weight.shape, norm.weight, norm.variance_epsilon)

    def _layers(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor | None,
        position_ids: torch.Tensor,
        cache: KVCache,
        call: Any,
        layers: int,
    ) -> torch.Tensor:
        """The first ``layers`` decoder layers over ``hidden`` [batch, steps, hidden] (the torch path), their
        keys and values written after the cache's ``length`` columns (which then counts them)."""
        batch, steps = hidden.shape[:2]
        start = cache.length
        total = start + steps
        assert cache.keys is not None and cache.values is not None
        cos = self._cos[position_ids].unsqueeze(1)  # [batch, 1, steps, head_dim]
        sin = self._sin[position_ids].unsqueeze(1)
        for i, layer in enumerate(self.model.model.layers[:layers]):
            attn, mlp = layer.self_attn, layer.mlp
            norm = layer.input_layernorm
            x = F.rms_norm(hidden, norm.weight.shape, norm.weight, norm.variance_epsilon)
            q = call(attn.q_proj, x).view(batch, steps, self.heads, self.head_dim).transpose(1, 2)
            k = call(attn.k_proj, x).view(batch, steps, self.kv_heads, self.head_dim).transpose(1, 2)
            v = call(attn.v_proj, x).view(batch, steps, self.kv_heads, self.head_dim).transpose(1, 2)
            keys, values = cache.keys[i], cache.values[i]
            keys[:, :, start:total] = _rope(k, cos, sin, self._half)
            values[:, :, start:total] = v
            out = F.scaled_dot_product_attention(
                _rope(q, cos, sin, self._half),
                keys[:, :, :total],
                values[:, :, :total],
                attn_mask=mask,
                scale=attn.scaling,
                enable_gqa=self.kv_heads != self.heads,
            )
            hidden = hidden + call(attn.o_proj, out.transpose(1, 2).reshape(batch, steps, -1))
            norm = layer.post_attention_layernorm
            x = F.rms_norm(hidden, norm.weight.shape, norm.weight, norm.variance_epsilon)
            hidden = hidden + call(mlp.down_proj, mlp.act_fn(call(mlp.gate_proj, x)) * call(mlp.up_proj, x))
        cache.length = total
        return hidden

    def _decode_step(
        self,
        kern: CPUKernels,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: KVCache,
        call: Any,
        rows: Sequence[str | None] | None,
    ) -> torch.Tensor:
        """One position per row through the C kernels (float32): one call for every layer where each
        projection is int8 (:mod:`decode_step`), else a call per operation."""
        assert cache.keys is not None and cache.values is not None
        column = cache.length
        valid = None if bool(attention_mask.all()) else attention_mask.to(torch.uint8).contiguous()
        positions = position_ids.reshape(-1).to(torch.int64).contiguous()
        low, high = (int(p) for p in torch.aminmax(positions))
        if low < 0 or high >= self._cos.shape[0]:  # the C kernel reads the rotary table unchecked
            raise ValueError(f"positions {low}..{high} are outside the model's 0..{self._cos.shape[0] - 1}")
        inner = self.model.model
        hidden = call(inner.embed_tokens, input_ids).contiguous()  # [batch, 1, hidden], updated in place
        program = self._program(rows, input_ids.shape[0]) if self.one_call else None
        if program is not None:
            normed = decode_step.run(
                kern,
                program,
                hidden,
                inner.norm.weight,
                inner.norm.variance_epsilon,
                self._cos,
                self._sin,
                positions,
                cache.keys,
                cache.values,
                column,
                valid,
                inner.layers[0].self_attn.scaling,
            )
            cache.length = column + 1
            return call(self.model.lm_head, normed)[:, 0]
        delta: torch.Tensor | None = None
        for i, layer in enumerate(inner.layers):
            attn, mlp = layer.self_attn, layer.mlp
            norm = layer.input_layernorm
            x = kern.add_rmsnorm(hidden, delta, norm.weight, norm.variance_epsilon)
            out = kern.rope_attend(
                call(attn.q_proj, x).contiguous(),
                call(attn.k_proj, x).contiguous(),
                call(attn.v_proj, x).contiguous(),
                self._cos,
                self._sin,
                positions,
                cache.keys[i],
                cache.values[i],
                column,
                valid,
                attn.scaling,
                self.heads,
            )
            norm = layer.post_attention_layernorm
            x = kern.add_rmsnorm(hidden, call(attn.o_proj, out), norm.weight, norm.variance_epsilon)
            gate = call(mlp.gate_proj, x).contiguous()
            delta = call(mlp.down_proj, kern.silu_mul(gate, call(mlp.up_proj, x).contiguous()))
        cache.length = column + 1
        norm = inner.norm
        return call(self.model.lm_head, kern.add_rmsnorm(hidden, delta, norm.weight, norm.variance_epsilon))[
            :, 0
        ]

    def _mask(self, attention_mask: torch.Tensor, steps: int, start: int) -> torch.Tensor | None:
        """Additive mask [batch, 1, steps, total] (None when every position may be seen)."""
        valid = attention_mask.bool()
        if steps == 1:
            if bool(valid.all()):
                return None
            allowed = valid[:, None, None, :]
        else:
            total = start + steps
            query = torch.arange(start, total).unsqueeze(1)
            key = torch.arange(total).unsqueeze(0)
            # A padding query sees itself, so no row is fully masked (a NaN there would reach the
            # values of real rows through 0 * NaN).
            allowed = ((key <= query) & valid[:, None, None, :]) | (key == query)
        mask = torch.zeros(allowed.shape, dtype=self.dtype)
        return mask.masked_fill_(~allowed, torch.finfo(self.dtype).min)

    def adapters_changed(self) -> None:
        """Forget the per-batch routing plans: an adapter was loaded or unloaded, or the model unwrapped."""
        self._plans.clear()
        self._programs.clear()

    def _program(self, rows: Sequence[str | None] | None, batch: int) -> decode_step.DecodeProgram | None:
        """The one-call decode step for this batch composition, built once (None: not every module can run in it)."""
        key = (None if rows is None else tuple(rows), batch)
        if key in self._programs:
            return self._programs[key]
        if len(self._programs) >= _MAX_PLANS:
            self._programs.clear()
        layers = self._layer_weights(None if rows is None else runs_of(rows), batch)
        program = None
        if layers is not None:
            config = self.model.config
            shape = Shape(
                config.hidden_size, self.heads, self.kv_heads, self.head_dim, config.intermediate_size
            )
            program = decode_step.build_program(layers, shape, batch)
        self._programs[key] = program
        return program

    def _layer_weights(
        self, runs: list[tuple[str | None, int, int]] | None, batch: int
    ) -> list[LayerWeights] | None:
        """Every layer's norms and int8 projections with their LoRA runs; None when a module is anything else
        (another weight format, a hook, adapters routed by the modules themselves) or the layers' attention
        scales differ."""
        layers = []
        scales = set()
        for layer in self.model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            modules = dict(
                q=attn.q_proj,
                k=attn.k_proj,
                v=attn.v_proj,
                o=attn.o_proj,
                gate=mlp.gate_proj,
                up=mlp.up_proj,
                down=mlp.down_proj,
            )
            projections = {name: _c_projection(module, runs, batch) for name, module in modules.items()}
            if any(p is None for p in projections.values()):
                return None
            scales.add(attn.scaling)
            first, second = layer.input_layernorm, layer.post_attention_layernorm
            layers.append(
                LayerWeights(
                    first.weight,
                    first.variance_epsilon,
                    second.weight,
                    second.variance_epsilon,
                    {name: p for name, p in projections.items() if p is not None},
                )
            )
        return layers if len(scales) == 1 else None

    def _router(self, rows: Sequence[str | None] | None) -> Any:
        if rows is None:
            return _plain
        key = tuple(rows)
        plans = self._plans.get(key)
        if plans is None:
            # What to call for each module is decided once per batch composition, not per step and layer:
            # the checks cost a decode step at batch 1 half as much again as its matrices (attribute reads).
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            plans = self._plans[key] = {}
        runs = runs_of(rows)

        def call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
            plan = plans.get(id(module))
            if plan is None:
                plan = plans[id(module)] = _plan(module, runs, len(rows))
            return plan(x)

        return call


def _plan(module: nn.Module, runs: list[tuple[str | None, int, int]], rows: int) -> Any:
    """How one module computes a batch whose rows use ``runs``' adapters: the module itself (no LoRA), or
    its base module plus the LoRA update of each run of rows whose adapter it holds."""
    if not isinstance(module, LoraModule):
        return _direct(module)
    deltas = module.deltas(runs, rows)
    base = _direct(module.base_layer)
    if not deltas:
        return base
    add = module.add_deltas

    def run(x: torch.Tensor) -> torch.Tensor:
        return add(x, base(x), deltas)

    return run


def _c_projection(
    module: nn.Module, runs: list[tuple[str | None, int, int]] | None, batch: int
) -> Projection | None:
    """``module`` as the one-call step runs it (an Int8Linear or Q4Linear, maybe under LoRA), or None when it
    cannot."""
    if _hooked(module):
        return None
    lora: tuple[LoraRun, ...] = ()
    if isinstance(module, LoraModule):
        if runs is None:  # the modules' own routing: only their forward knows it
            return None
        lora = tuple(
            LoraRun(lo, hi, a, b_t, float(scaling))
            for lo, hi, _, a, b_t, scaling in module.deltas(runs, batch)
        )
        if not all(_c_readable(run) for run in lora):
            return None
        module = module.base_layer
        if _hooked(module):
            return None
    if type(module) not in (Int8Linear, Q4Linear):
        return None
    bias = None if module.bias is None else module.bias.detach()
    if bias is not None and bias.dtype != torch.float32:
        return None
    return Projection(module.qweight, module._scales if type(module) is Int8Linear else None, bias, lora)


def _c_readable(run: LoraRun) -> bool:
    """Whether the C step reads this run as it is (float32 row-major, a rank it takes); else the per-call path."""
    matrices = (run.a, run.bt)
    rank = run.a.shape[0]
    return (
        all(m.dtype == torch.float32 and m.is_contiguous() for m in matrices) and rank <= decode_step.MAX_RANK
    )


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _direct(module: nn.Module) -> Any:
    """``module.forward`` itself where no hook is registered on the module: nn.Module's call wrapper costs a
    few microseconds, and a decode step calls about 200 modules."""
    return module if module._forward_hooks or module._forward_pre_hooks else module.forward


def _plain(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)


def _rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor, half: int) -> torch.Tensor:
    """Rotary embedding, bit for bit what transformers' ``apply_rotary_pos_emb`` computes:
    ``x * cos + cat(-x2, x1) * sin`` with the sign moved into ``signed_sin``."""
    return x * cos + x.roll(half, -1) * signed_sin
