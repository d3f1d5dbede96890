"""Linear layers whose weights are read as float16 during decoding, for memory-bound CPUs.

Decoding a 135M model reads every weight once per token, so bytes per weight set the speed.
:class:`PackedFP16Linear` is still an ``nn.Linear`` (PEFT wraps it with LoRA as usual and sees a
float32 ``weight``, so adapters load and run in float32), but its forward multiplies with an
fbgemm-packed float16 copy. The float32 weight stays as the reference copy: it costs RAM, not
bandwidth, because decoding never reads it.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

# torch marks the fbgemm float16 ops deprecated (with torch.ao); they are the only AVX2 float16
# GEMM in the CPU wheel. pyproject pins torch below 2.15 and fbgemm_available() guards the call.
# torch warns once per process per op, so only the first calls are wrapped to silence it.
_DEPRECATION = r"fbgemm_\w+ is deprecated"
_forward_warned = False


def fbgemm_available() -> bool:
    """True when this torch build has fbgemm (x86 CPU wheels do; ARM ones do not)."""
    return "fbgemm" in torch.backends.quantized.supported_engines and hasattr(torch, "fbgemm_pack_gemm_matrix_fp16")


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
        out = torch.fbgemm_linear_fp16_weight_fp32_activation(x.reshape(-1, shape[-1]).float(), self._packed, bias)
        return out.reshape(*shape[:-1], self.out_features)


def pack_linears(model: nn.Module) -> int:
    """Replace every plain nn.Linear in ``model`` (lm_head included) by a PackedFP16Linear.

    Returns how many were replaced. Call before PEFT wraps the model.
    """
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, PackedFP16Linear(child))
                replaced += 1
    return replaced
