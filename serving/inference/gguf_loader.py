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
    config: Any = None,
) -> Any:
    """The causal LM stored in the GGUF at ``path``, in eval mode, with no tensor left on the meta device.

    Every tensor becomes ``dtype`` (norms, embeddings, and Linear weights ``make_linear`` keeps);
    ``make_linear`` sees each plain ``nn.Linear`` once its float32 weight is in place and may return
    a module to take its place (an input embedding tied to the output is loaded once, and the output
    Linear made from it at the end). The file's memory map is closed on return.
    """
    from accelerate import init_empty_weights
    from gguf import GGUFReader, dequantize
    from transformers import AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
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
        _place(
            model, target, torch.from_numpy(np.array(result.weights, dtype=np.float32)), dtype, make_linear
        )
        placed += 1
    del reader  # the memory map goes with the last reference to it
    _tie_output(model, config, make_linear)
    missing = [name for name, p in model.named_parameters(remove_duplicate=False) if p.is_meta]
    if missing:
        raise ValueError(f"{path}: no tensor in the file for {', '.join(missing[:4])} (of {len(missing)})")
    log.info("loaded %d tensors of %s (%s) one at a time", placed, path.name, architecture)
    model.eval()
    return model


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
    expected = getattr(owner, attr).shape
    if tuple(value.shape) != tuple(expected):
        raise ValueError(
            f"GGUF tensor for {name} has shape {tuple(value.shape)}, the model needs {tuple(expected)}"
        )
    setattr(owner, attr, nn.Parameter(value.to(dtype)))
    if attr == "weight" and type(owner) is nn.Linear and make_linear is not None:
        _swap(model, owner_name, owner, make_linear)


def _swap(model: nn.Module, name: str, linear: nn.Linear, make_linear: LinearMaker) -> None:
    replacement = make_linear(linear)
    if replacement is not None:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, replacement)


def _tie_output(model: Any, config: Any, make_linear: LinearMaker | None) -> None:
    """GGUF files store a tied output projection once, as the token embedding: share it, then pack it."""
    output = model.get_output_embeddings()
    weight = getattr(output, "weight", None)
    if weight is None or not weight.is_meta or not getattr(config, "tie_word_embeddings", False):
        return
    output.weight = model.get_input_embeddings().weight
    if type(output) is nn.Linear and make_linear is not None:
        name = next(n for n, m in model.named_modules() if m is output)
        _swap(model, name, output, make_linear)
