"""Linear layers whose weights are read as int8 or float16 during decoding, for CPUs.

Decoding a 135M model reads every weight once per token, so bytes per weight (and the cost of
turning them into float32) set the speed. :class:`Int8Linear` and :class:`PackedFP16Linear` are
still ``nn.Linear`` (PEFT wraps them with LoRA as usual, and adapters load and run in float32).
:class:`Q4Linear` keeps a GGUF file's Q4_0/Q4_1 blocks as they are (about 0.6 bytes per weight), for the
GGUF loader's ``weights: q4``.
:class:`Int8Linear` keeps only int8 weights with a scale per output channel (our C kernel,
``cpu_kernels.py``), for decode steps and prefill alike, unless asked to keep the float32 weight for
prefill. :class:`PackedFP16Linear` multiplies decode steps with fbgemm-packed float16 and prefill
(several positions per sequence: compute-bound, not memory-bound) with the float32 weight, which
MKL does faster and exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .cpu_kernels import BLOCK, Q4_TYPES, CPUKernels, block_rows, load_kernels, pack, packable, q4_packable

# torch marks the fbgemm float16 ops deprecated (with torch.ao); they are the only AVX2 float16
# GEMM in the CPU wheel. pyproject pins torch below 2.15 and fbgemm_available() guards the call.
# torch warns once per process per op, so only the first calls are wrapped to silence it.
_DEPRECATION = r"fbgemm_\w+ is deprecated"
_forward_warned = False
# Rows quantised at a time: quantisation makes float32 temporaries of its input, so a 49k-row lm_head
# (or a 7B model's 32k x 4096 one) would briefly need several float32 copies of itself at once.
PACK_ROWS = 2048


def fbgemm_available() -> bool:
    """True when this torch build has fbgemm (x86 CPU wheels do; ARM ones do not)."""
    return "fbgemm" in torch.backends.quantized.supported_engines and hasattr(
        torch, "fbgemm_pack_gemm_matrix_fp16"
    )


class PackedFP16Linear(nn.Linear):
    """nn.Linear computing ``x @ W.T`` with float16 weights packed for fbgemm (float32 in and out).

    ``weight`` must not be changed after construction (call :meth:`repack` if it is): serving never
    merges adapters into the base, which is why this is safe.
    """

    def __init__(self, source: nn.Linear) -> None:
        nn.Module.__init__(self)
        self.in_features = source.in_features
        self.out_features = source.out_features
        self.weight = source.weight
        self.bias = source.bias
        self.repack()

    def repack(self) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_DEPRECATION)
            self._packed: torch.Tensor | None = torch.fbgemm_pack_gemm_matrix_fp16(
                self.weight.detach().float().contiguous()
            )

    def __getstate__(self) -> dict:
        # The packed tensor wraps a C++ object that copy/pickle cannot carry; it is rebuilt on use.
        state = self.__dict__.copy()
        state["_packed"] = None
        return state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        global _forward_warned
        if not is_decode(x):
            return F.linear(x, self.weight, self.bias)
        if self._packed is None:
            self.repack()
        if not _forward_warned:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_DEPRECATION)
                out = self._matmul(x)
            _forward_warned = True
            return out
        return self._matmul(x)

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.detach()
        shape = x.shape
        out = torch.fbgemm_linear_fp16_weight_fp32_activation(
            x.reshape(-1, shape[-1]).float(), self._packed, bias
        )
        return out.reshape(*shape[:-1], self.out_features)


class Int8Linear(nn.Linear):
    """nn.Linear whose weights are int8 (symmetric, one scale per output channel), multiplied by our C kernel.

    Activations, accumulation, bias and LoRA stay float32. By default the int8 copy is the only one:
    prefill multiplies with it too (the same kernel, so a prompt's positions and its decode steps see
    the same weights) and ``weight`` is None, so memory per parameter is about one byte.
    ``keep_float=True`` keeps the float32 ``weight`` for prefill and training (MKL, exact, about 10 %
    faster prefill on AVX2, 4 more bytes per parameter); ``weight`` must then not change after
    construction (:meth:`repack`).
    """

    def __init__(
        self,
        source: nn.Linear,
        kernel: CPUKernels,
        keep_float: bool = False,
        packed: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """``packed``: (blocked int8, scales) already made from ``source``'s values (the GGUF loader's rows);
        else :func:`pack_in_rows` of ``source.weight``."""
        nn.Module.__init__(self)
        self.in_features = source.in_features
        self.out_features = source.out_features
        self.bias = source.bias
        self._kernel = kernel
        self.keep_float = keep_float
        # Plain attributes, not buffers: state_dict sees only what nn.Linear has. PEFT places adapters on
        # the device of `qweight` (its name for a quantized base weight) when there is no `weight`.
        self.qweight, self._scales = packed if packed is not None else pack_in_rows(source.weight)
        if keep_float:
            self.weight = source.weight
        else:
            self.register_parameter(
                "weight", None
            )  # PEFT then finds no weight and leaves adapters where they are

    def repack(self) -> None:
        if self.weight is None:
            raise RuntimeError("an int8-only layer has no float32 weight to pack again")
        self.qweight, self._scales = pack_in_rows(self.weight)

    def __getstate__(self) -> dict:
        # The ctypes kernel cannot be copied or pickled; the copy finds it again on first use.
        state = self.__dict__.copy()
        state["_kernel"] = None
        return state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            self.keep_float
            and self.weight is not None
            and (not is_decode(x) or (self.weight.requires_grad and torch.is_grad_enabled()))
        ):
            return F.linear(x, self.weight, self.bias)  # prefill (or training): float32
        if self._kernel is None:
            self._kernel = load_kernels()
            if self._kernel is None:
                raise RuntimeError("the int8 kernel is not available on this machine")
        bias = None if self.bias is None else self.bias.detach()
        return self._kernel.linear(x, self.qweight, self._scales, bias)


class Q4Linear(nn.Linear):
    """nn.Linear whose weights are a GGUF file's Q4_0/Q4_1 blocks, repacked by :meth:`CPUKernels.q4_pack`.

    The same contract as an int8-only :class:`Int8Linear`: ``weight`` is None, ``qweight`` holds the packed
    uint8 blocks (the only copy: 5 bits per weight with the float16 scales), activations, accumulation,
    bias and LoRA stay float32, and decode steps and prefill go through the same kernel
    (:meth:`CPUKernels.linear_q4`), so a row's result does not depend on its batch.
    """

    def __init__(self, source: nn.Linear, kernel: CPUKernels, qweight: torch.Tensor) -> None:
        """``qweight``: what ``kernel.q4_pack`` made of the blocks of ``source``'s values (its weight may be
        on the meta device)."""
        nn.Module.__init__(self)
        expected = (source.out_features // BLOCK, source.in_features // 32)
        if qweight.dtype != torch.uint8 or tuple(qweight.shape[:2]) != expected:
            raise ValueError(f"q4 blocks of {qweight.dtype} {tuple(qweight.shape)} for {source}")
        self.in_features = source.in_features
        self.out_features = source.out_features
        self.bias = source.bias
        self._kernel = kernel
        self.qweight = qweight  # a plain attribute, as Int8Linear's: PEFT and lora.py read it for the device
        self.register_parameter("weight", None)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_kernel"] = None
        return state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._kernel is None:
            self._kernel = load_kernels()
            if self._kernel is None:
                raise RuntimeError("the q4 kernel is not available on this machine")
        bias = None if self.bias is None else self.bias.detach()
        return self._kernel.linear_q4(x, self.qweight, bias)


def pack_in_rows(weight: torch.Tensor, rows: int = PACK_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`cpu_kernels.pack` of ``weight`` [N, K], ``rows`` rows at a time: the same bytes and scales.

    Scales are per row and the blocked layout keeps each 8-row block's bytes together, so a slice of
    whole row blocks packs into the matching slice of the result; only one slice's float32
    temporaries exist at a time.
    """
    n, k = weight.shape
    step = max(BLOCK, rows - rows % BLOCK)
    if n <= step or not packable(n, k):
        return pack(weight)
    qweight = torch.empty((n, k), dtype=torch.int8)
    scales = torch.empty(n, dtype=torch.float32)
    for start in range(0, n, step):
        q, s = pack(weight[start : start + step])
        qweight[start : start + q.shape[0]] = q
        scales[start : start + q.shape[0]] = s
    return qweight, scales


def is_decode(x: torch.Tensor) -> bool:
    """One position per sequence ([batch, 1, features] or [rows, features]): a memory-bound step."""
    return x.dim() < 3 or x.shape[-2] == 1


def _replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Linear | None]) -> int:
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                new = make(child)
                if new is not None:
                    setattr(parent, name, new)
                    replaced += 1
    return replaced


def pack_linears(model: nn.Module) -> int:
    """Replace every plain nn.Linear in ``model`` (lm_head included) by a PackedFP16Linear.

    Returns how many were replaced. Call before PEFT wraps the model.
    """
    return _replace_linears(model, PackedFP16Linear)


def quantize_linears(model: nn.Module, kernel: CPUKernels | None = None, keep_float: bool = False) -> int:
    """Replace every plain nn.Linear (lm_head included) whose sizes the kernel takes by an Int8Linear.

    Returns how many were replaced (0 when the kernel cannot run here). Without ``keep_float`` the
    float32 weights are dropped (a weight tied to another module, the usual lm_head, lives on there).
    Call before PEFT wraps the model.
    """
    kernel = kernel or load_kernels()
    if kernel is None:
        return 0
    return _replace_linears(model, int8_maker(kernel, keep_float))


def int8_maker(kernel: CPUKernels, keep_float: bool = False) -> Int8Maker:
    """What replaces one plain nn.Linear by an Int8Linear: None for a layer the kernel cannot take.

    :func:`quantize_linears` applies it to a loaded model; the GGUF loader applies it to each layer as
    its weight arrives, so the float32 weight is dropped before the next one is read.
    """
    return Int8Maker(kernel, keep_float)


class Int8Maker:
    """Callable on a plain nn.Linear (see :func:`int8_maker`); also builds one from int8 rows made elsewhere."""

    def __init__(self, kernel: CPUKernels, keep_float: bool = False) -> None:
        self.kernel = kernel
        self.keep_float = keep_float

    def __call__(self, linear: nn.Linear) -> nn.Linear | None:
        if not packable(linear.out_features, linear.in_features):
            return None
        return Int8Linear(linear, self.kernel, self.keep_float)

    def takes_rows(self, out_features: int, in_features: int) -> bool:
        """Whether :meth:`from_rows` can make this layer (int8 only: no float32 weight to keep)."""
        return not self.keep_float and packable(out_features, in_features)

    def from_rows(self, linear: nn.Linear, q: torch.Tensor, scales: torch.Tensor) -> Int8Linear:
        """An int8-only layer for ``linear`` (its weight may be on the meta device) from row-major int8
        rows [out, in] and scales, as :func:`cpu_kernels.quantize` makes them: the same layer as ``self(linear)``
        on those float32 values, without them."""
        if not self.takes_rows(linear.out_features, linear.in_features) or tuple(q.shape) != (
            linear.out_features,
            linear.in_features,
        ):
            raise ValueError(f"int8 rows of {tuple(q.shape)} for {linear}")
        return Int8Linear(linear, self.kernel, packed=(block_rows(q), scales))


def detach_from_checkpoint(model: nn.Module) -> None:
    """Give every parameter and buffer its own memory, releasing the checkpoint file's memory map.

    transformers maps a safetensors checkpoint into memory and its tensors point into the map.
    After :func:`quantize_linears` drops the float32 Linear weights, the map stays as long as any
    tensor (the embedding, a norm) still points into it, and with it every page the quantisation
    read: about 4 bytes per parameter of resident memory. Copying what is left (the same Parameter
    objects, so tied weights stay tied) lets the map go.
    """
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.data = tensor.data.clone()


class Q4Maker(Int8Maker):
    """An :class:`Int8Maker` that also keeps Linears stored in Q4_0/Q4_1 blocks as :class:`Q4Linear` (the GGUF
    loader asks :meth:`keeps_blocks`); every other Linear becomes int8 rows as with the plain maker."""

    def __init__(self, kernel: CPUKernels) -> None:
        super().__init__(kernel, keep_float=False)

    def keeps_blocks(self, qtype: int, out_features: int, in_features: int) -> bool:
        return int(qtype) in Q4_TYPES and q4_packable(out_features, in_features)

    def from_blocks(self, linear: nn.Linear, qweight: torch.Tensor) -> Q4Linear:
        """A Q4Linear for ``linear`` (its weight may be on the meta device) from ``kernel.q4_pack``'s blocks."""
        return Q4Linear(linear, self.kernel, qweight)
