"""A causal LM built straight from a GGUF file, one tensor at a time, never the whole model in float32.

transformers' own GGUF load (``from_pretrained(gguf_file=...)``) dequantizes every tensor into one
float32 state dict before the model sees any of it: 4 bytes per parameter at peak, 28 GB for a 7B
model, which is why the engine used to read a float32 safetensors folder converted once from the
GGUF. Here the model is built with empty (meta) weights from the GGUF's metadata, and each tensor is
dequantized with the ``gguf`` package's numpy code (what transformers uses for Llama), put in its
place and, for a Linear weight, handed to ``make_linear`` (the engine's int8 packing) before the next
one is read. Peak memory is the quantised model plus one float32 tensor. The values are the ones
transformers' load produces (same dequantization, same q/k row permutation), so the same int8
weights come out of either route.

Dense models whose transformers GGUF tensor processor maps one GGUF tensor to one parameter (Llama,
Qwen2, Mistral, ...) load; a file that leaves a parameter without a tensor is refused by name.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import mmap
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

# Replaces a Linear whose weight has just been loaded (None: keep it as it is).
LinearMaker = Callable[[nn.Linear], nn.Module | None]
# transformers' processors for these gather several GGUF tensors into one parameter (MoE experts).
MANY_TO_ONE = frozenset({"qwen2moe", "qwen3moe", "gpt_oss", "gpt-oss", "minimax-m2"})


def read_config(path: Path) -> Any:
    """The transformers config of the GGUF at ``path``, from its metadata (no tensor is read)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)


def load_gguf_model(
    path: Path,
    *,
    dtype: torch.dtype = torch.float32,
    make_linear: LinearMaker | None = None,
    quantized_embedding: bool = False,
    config: Any = None,
) -> Any:
    """The causal LM stored in the GGUF at ``path``, in eval mode, with no tensor left on the meta device.

    Every tensor becomes ``dtype`` (norms, embeddings, and Linear weights ``make_linear`` keeps);
    ``make_linear`` sees each plain ``nn.Linear`` once its float32 weight is in place and may return
    a module to take its place (an output projection tied to the input embedding is made from the
    embedding's values). ``quantized_embedding``: a block-quantised input embedding stays in the
    file's format (:class:`GGUFEmbedding`) instead of float32. The file's memory map is closed on return.
    """
    from accelerate import init_empty_weights
    from gguf import GGUFReader, dequantize
    from transformers import AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        LlamaTensorProcessor,
        TensorProcessor,
        get_gguf_hf_weights_map,
    )

    path = Path(path)
    config = config if config is not None else read_config(path)
    # Parameters on the meta device; buffers (the rotary table) computed for real, as at any load.
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    reader = GGUFReader(path)
    architecture = _architecture(reader)
    if architecture in MANY_TO_ONE:
        raise ValueError(
            f"{path}: architecture {architecture!r} (experts spread over tensors) is not loadable here"
        )
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=config.to_dict())
    names = get_gguf_hf_weights_map(model, processor)
    # Only where the processor leaves the embedding's values as dequantized (theirs may rescale it).
    embedding = _name_of(model, model.get_input_embeddings())
    keep_blocks = quantized_embedding and type(processor) in (TensorProcessor, LlamaTensorProcessor)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    placed = 0
    for tensor in reader.tensors:
        weights = dequantize(tensor.data, tensor.tensor_type)
        result = processor.process(
            weights=weights, name=tensor.name, tensor_key_mapping=names, parsed_parameters={}
        )
        target = names.get(result.name)
        if target is None:
            log.debug("GGUF tensor %s has no place in the model: skipped", tensor.name)
            continue
        # A copy the model owns: an F32 tensor's dequantization is a view of the file's memory map.
        value = torch.from_numpy(np.array(result.weights, dtype=np.float32))
        if embedding and target == f"{embedding}.weight" and keep_blocks and tensor.data.dtype == np.uint8:
            _check_shape(target, value, model.get_input_embeddings().weight)
            blocks = torch.from_numpy(np.array(tensor.data))  # [vocab, bytes per row], copied out of the map
            _set_module(model, embedding, GGUFEmbedding(blocks, tensor.tensor_type, value.shape[1]))
            if tied:
                _tie_output(model, value, dtype, make_linear)
        else:
            _place(model, target, value, dtype, make_linear)
        del weights, result, value
        placed += 1
        _release(reader, tensor.data_offset, tensor.n_bytes)
        trim_heap()
    del reader  # the memory map goes with the last reference to it
    if tied:
        _tie_output(model, None, dtype, make_linear)
    missing = [name for name, p in model.named_parameters(remove_duplicate=False) if p.is_meta]
    if missing:
        raise ValueError(f"{path}: no tensor in the file for {', '.join(missing[:4])} (of {len(missing)})")
    log.info("loaded %d tensors of %s (%s) one at a time", placed, path.name, architecture)
    model.eval()
    return model


class GGUFEmbedding(nn.Module):
    """An input embedding kept in the GGUF's block format, rows dequantized as they are looked up.

    Q8_0 holds about 1.06 bytes per value instead of float32's 4 (for SmolLM2 30 MB instead of 113; for
    a 128k-token vocabulary of width 4096, 0.56 GB instead of 2.1). A lookup dequantizes its rows with
    the ``gguf`` function that dequantizes the whole tensor at load, and that arithmetic is per value,
    so the rows are the same float32 bits a float32 embedding would hold; a forward reads a few hundred
    rows at most. There is no ``weight`` to train or tie: ``weight`` is a meta tensor that tells its
    shape and dtype (the lean forward reads the dtype) and holds no values.
    """

    def __init__(self, blocks: torch.Tensor, qtype: Any, embedding_dim: int) -> None:
        super().__init__()
        self.blocks = blocks  # uint8 [vocab, bytes per row]; a plain attribute, not in state_dict
        self.qtype = qtype
        self.num_embeddings = blocks.shape[0]
        self.embedding_dim = embedding_dim

    @property
    def weight(self) -> torch.Tensor:
        return torch.empty(self.num_embeddings, self.embedding_dim, device="meta")

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        from gguf import dequantize

        rows = self.blocks[input_ids.reshape(-1)].numpy()
        values = torch.from_numpy(dequantize(rows, self.qtype))
        return values.view(*input_ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {getattr(self.qtype, 'name', self.qtype)}"


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    Quantising a model frees one float32 temporary after another. glibc raises its mmap threshold
    each time a large block is freed, so later temporaries come from the heap, and their freed space
    stays resident: on a 0.47 B model 1.93 GB after the load against 0.98 GB once trimmed.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc (musl, macOS)
        return None


def _release(reader: Any, offset: int, length: int) -> None:
    """Drop a tensor's file pages, now read, from this process's resident memory.

    They stay in the page cache (clean, file-backed: nothing is lost), but while mapped they count in
    the replica's RSS, which would otherwise reach the int8 model plus the whole file by the end of
    the load. numpy's memmap keeps its mmap object as ``_mmap``; without one, nothing is dropped.
    """
    mapped = getattr(reader.data, "_mmap", None)
    if mapped is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    start = offset - offset % mmap.PAGESIZE
    mapped.madvise(mmap.MADV_DONTNEED, start, offset + length - start)


def _architecture(reader: Any) -> str:
    field = reader.fields["general.architecture"]
    return bytes(field.parts[field.data[0]]).decode()


def _place(
    model: nn.Module, name: str, value: torch.Tensor, dtype: torch.dtype, make_linear: LinearMaker | None
) -> None:
    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name)
    _check_shape(name, value, getattr(owner, attr))
    setattr(owner, attr, nn.Parameter(value.to(dtype)))
    if attr == "weight" and type(owner) is nn.Linear and make_linear is not None:
        replacement = make_linear(owner)
        if replacement is not None:
            _set_module(model, owner_name, replacement)


def _check_shape(name: str, value: torch.Tensor, expected: torch.Tensor) -> None:
    if tuple(value.shape) != tuple(expected.shape):
        raise ValueError(
            f"GGUF tensor for {name} has shape {tuple(value.shape)}, the model needs {tuple(expected.shape)}"
        )


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def _name_of(model: nn.Module, module: nn.Module | None) -> str | None:
    return next((n for n, m in model.named_modules() if m is module), None) if module is not None else None


def _tie_output(
    model: Any, value: torch.Tensor | None, dtype: torch.dtype, make_linear: LinearMaker | None
) -> None:
    """GGUF files store a tied output projection once, as the token embedding: give the output its values
    (``value``, or the embedding's own weight when None) and let ``make_linear`` pack it, as when loaded."""
    output = model.get_output_embeddings()
    weight = getattr(output, "weight", None)
    if output is None or weight is None or not weight.is_meta:
        return
    output.weight = model.get_input_embeddings().weight if value is None else nn.Parameter(value.to(dtype))
    if type(output) is nn.Linear and make_linear is not None:
        replacement = make_linear(output)
        if replacement is not None:
            _set_module(model, _name_of(model, output) or "lm_head", replacement)
