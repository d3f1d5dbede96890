"""A causal LM built straight from a GGUF file, one tensor at a time, never the whole model in float32.

transformers' own GGUF load (``from_pretrained(gguf_file=...)``) dequantizes every tensor into one
float32 state dict before the model sees any of it: 4 bytes per parameter at peak, 28 GB for a 7B
model, which is why the engine used to read a float32 safetensors folder converted once from the
GGUF. Here the model is built with empty (meta) weights from the GGUF's metadata, and each tensor is
dequantized with the ``gguf`` package's numpy code (what transformers uses for Llama), put in its
place and, for a Linear weight, handed to ``make_linear`` (the engine's int8 packing) before the next
one is read. Peak memory is the quantised model plus one float32 tensor. The values are the ones
transformers' load produces (same dequantization, same q/k row permutation), so the same int8
weights come out of either route. With an int8-only maker (:class:`fast_linear.Int8Maker`), a Linear
stored in Q4_0, Q4_1 or Q8_0 blocks skips the float32 tensor altogether: the C kernels turn its blocks
into int8 rows with the same arithmetic (``CPUKernels.gguf_rows_int8``: the same bytes and scales).

The file is parsed once: transformers' config reader is handed the reader this module opened
(:func:`_reuse`), whose metadata arrays are read without numpy's memmap overhead per element.

Dense models whose transformers GGUF tensor processor maps one GGUF tensor to one parameter (Llama,
Qwen2, Mistral, ...) load; a file that leaves a parameter without a tensor is refused by name.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import mmap
import os
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from . import llama_model
from .cpu_kernels import GGUF_BLOCK_BYTES, Q4Overflow
from .fast_linear import Int8Maker, Q4Maker
from .heap import trim_heap

log = logging.getLogger(__name__)

# Replaces a Linear whose weight has just been loaded (None: keep it as it is).
LinearMaker = Callable[[nn.Linear], nn.Module | None]
# transformers' processors for these gather several GGUF tensors into one parameter (MoE experts).
MANY_TO_ONE = frozenset({"qwen2moe", "qwen3moe", "gpt_oss", "gpt-oss", "minimax-m2"})


# Held while the gguf module's reader and name-map functions are swapped for this process's (see _reuse).
_REUSE_LOCK = threading.Lock()


def read_config(path: Path, reader: Any = None) -> Any:
    """The transformers config of the GGUF at ``path``, from its metadata (no tensor is read).

    ``reader``: the file already parsed (:func:`open_gguf`), which transformers then reads instead of
    parsing the file again.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig

    path = Path(path)
    with _reuse(path, _ConfigView(reader)) if reader is not None else contextlib.nullcontext():
        return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)


# The vocabulary's arrays: transformers' config reader turns each of their ~100k values into a Python
# object (seconds), for the tokenizer it then drops, and for nothing of the config but the vocabulary's
# size when the file does not state it.
VOCABULARY_ARRAYS = (
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
)


class _ConfigView:
    """What transformers' GGUF config reader reads of a reader: its tensors and its fields, without the
    vocabulary's arrays when the file states the vocabulary's size (``<architecture>.vocab_size``)."""

    def __init__(self, reader: Any) -> None:
        self.tensors = reader.tensors
        self.fields = reader.fields
        if f"{_architecture(reader)}.vocab_size" in reader.fields:
            self.fields = type(reader.fields)(
                (k, v) for k, v in reader.fields.items() if k not in VOCABULARY_ARRAYS
            )


def open_gguf(path: Path) -> Any:
    """The ``gguf`` package's reader of the file at ``path`` (the same fields and tensors), parsed faster."""
    return _reader_class()(path)


@functools.cache
def _reader_class() -> type:
    """``GGUFReader`` with its metadata reads made cheap; the fields and tensors it builds are the same.

    The stock reader slices its ``np.memmap`` once per value, and every memmap slice runs numpy's Python
    subclass hooks: a 49k-token vocabulary and its merges took seconds. Here slices come from a plain
    ndarray view of the same map, and a flat array's elements are sliced in one loop.
    """
    from gguf import GGUFReader, GGUFValueType

    class Reader(GGUFReader):
        def _get(self, offset: int, dtype: Any, count: int = 1, override_order: Any = None) -> Any:
            plain = self.__dict__.get("_plain")
            if plain is None:
                plain = self._plain = self.data.view(np.ndarray)
            count = int(count)
            arr = plain[offset : offset + np.dtype(dtype).itemsize * count].view(dtype=dtype)[:count]
            return arr.view(
                arr.dtype.newbyteorder(self.byte_order if override_order is None else override_order)
            )

        def _get_field_parts(self, orig_offs: int, raw_type: int) -> Any:
            if raw_type != GGUFValueType.ARRAY or self.byte_order != "I":
                return super()._get_field_parts(orig_offs, raw_type)
            raw_itype = self._get(orig_offs, np.uint32)
            alen = self._get(orig_offs + 4, np.uint64)
            itype, count, offs = GGUFValueType(raw_itype[0]), int(alen[0]), orig_offs + 12
            scalar = self.gguf_scalar_to_np.get(itype)
            if itype != GGUFValueType.STRING and scalar is None:  # arrays of arrays: the stock way
                return super()._get_field_parts(orig_offs, raw_type)
            parts: list[Any] = [raw_itype, alen]
            plain = self._plain
            if scalar is not None:
                width = np.dtype(scalar).itemsize
                values = plain[offs : offs + width * count].view(scalar)
                parts += [values[i : i + 1] for i in range(count)]
                indices = list(range(2, 2 + count))
                offs += width * count
            else:
                indices = []
                unpack = struct.Struct("=Q").unpack_from
                view = plain.data  # the buffer struct reads, without a copy
                for _ in range(count):
                    (length,) = unpack(view, offs)
                    parts.append(plain[offs : offs + 8].view(np.uint64))
                    parts.append(plain[offs + 8 : offs + 8 + length])
                    indices.append(len(parts) - 1)
                    offs += 8 + length
            types = [GGUFValueType.ARRAY, itype] if count else [GGUFValueType.ARRAY]
            return offs - orig_offs, parts, indices, types

    return Reader


def load_gguf_model(
    path: Path,
    *,
    dtype: torch.dtype = torch.float32,
    make_linear: LinearMaker | None = None,
    quantized_embedding: bool = False,
    config: Any = None,
    transformers_modules: bool = False,
) -> Any:
    """The causal LM stored in the GGUF at ``path``, in eval mode, with no tensor left on the meta device.

    Every tensor becomes ``dtype`` (norms, embeddings, and Linear weights ``make_linear`` keeps);
    ``make_linear`` sees each plain ``nn.Linear`` once its float32 weight is in place and may return
    a module to take its place (an output projection tied to the input embedding is made from the
    embedding's values). ``quantized_embedding``: a block-quantised input embedding stays in the
    file's format (:class:`GGUFEmbedding`) instead of float32, read from the file's memory map as rows are looked
    up; otherwise the map is closed on return.

    A plain Llama file becomes our own module tree (:mod:`llama_model`: no transformers import) unless
    ``transformers_modules`` (a model whose ``forward`` runs) or a transformers ``config`` is asked for;
    other architectures are built by transformers.
    """
    from gguf import dequantize

    path = Path(path)
    reader = open_gguf(path)
    own = not transformers_modules and config is None and llama_model.unbuildable_reason(reader) is None
    if own:
        config = llama_model.config_from_gguf(reader)
        model: Any = llama_model.LlamaForCausalLM(config)
        names = {t.name: target for t in reader.tensors if (target := llama_model.gguf_target(t.name))}
        processor: Any = _LlamaRows(config)
        plain = True
    else:
        model, names, processor, plain = _transformers_model(path, reader, config, dtype)
        config = model.config
    embedding = _name_of(model, model.get_input_embeddings())
    keep_blocks = quantized_embedding and plain
    tied = bool(getattr(config, "tie_word_embeddings", False))
    rows = make_linear if isinstance(make_linear, Int8Maker) and plain else None
    placed = 0
    for tensor in reader.tensors:
        if rows is not None and _from_blocks(
            model, tensor, names, processor, rows, embedding, keep_blocks, tied
        ):
            placed += 1
            _release(reader, tensor.data_offset, tensor.n_bytes)
            continue
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
            _set_module(model, embedding, GGUFEmbedding(tensor.data, tensor.tensor_type, value.shape[1]))
            if tied:
                _tie_output(model, value, dtype, make_linear)
        else:
            _place(model, target, value, dtype, make_linear)
        del weights, result, value
        placed += 1
        _release(reader, tensor.data_offset, tensor.n_bytes)
        trim_heap()
    del reader  # the memory map goes with the last reference to it (a GGUFEmbedding's rows keep it)
    if tied:
        _tie_output(model, None, dtype, make_linear)
    missing = [name for name, p in model.named_parameters(remove_duplicate=False) if p.is_meta]
    if missing:
        raise ValueError(f"{path}: no tensor in the file for {', '.join(missing[:4])} (of {len(missing)})")
    log.info("loaded %d tensors of %s (%s) one at a time", placed, path.name, type(model).__module__)
    model.eval()
    return model


def _transformers_model(
    path: Path, reader: Any, config: Any, dtype: torch.dtype
) -> tuple[Any, dict, Any, bool]:
    """transformers' model for the file with empty weights, its GGUF-to-parameter names, its tensor
    processor and whether that processor only moves whole rows (the blocks-to-int8 route needs that)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        LlamaTensorProcessor,
        TensorProcessor,
        get_gguf_hf_weights_map,
    )

    config = config if config is not None else read_config(path, reader)
    # Parameters on the meta device; buffers (the rotary table) computed for real, as at any load.
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    architecture = _architecture(reader)
    if architecture in MANY_TO_ONE:
        raise ValueError(
            f"{path}: architecture {architecture!r} (experts spread over tensors) is not loadable here"
        )
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=config.to_dict())
    with _reuse(path, reader):  # its name map built once, not once per module
        names = get_gguf_hf_weights_map(model, processor)
    # Only where the processor leaves the values as dequantized, or moves whole rows (theirs may rescale).
    return model, names, processor, type(processor) in (TensorProcessor, LlamaTensorProcessor)


class _LlamaRows:
    """The tensor processor of our Llama tree: the query and key projections' rows back in rotate-half
    order (what transformers' LlamaTensorProcessor does), every other tensor as dequantized."""

    def __init__(self, config: llama_model.LlamaConfig) -> None:
        self.config = config

    def process(self, *, weights: Any, name: str, tensor_key_mapping: Any, parsed_parameters: Any) -> Any:
        order = llama_model.rope_row_order(name, weights.shape[0], self.config)
        return SimpleNamespace(name=name, weights=weights if order is None else weights[order])


def _from_blocks(
    model: nn.Module,
    tensor: Any,
    names: dict[str, str],
    processor: Any,
    maker: Int8Maker,
    embedding: str | None,
    keep_blocks: bool,
    tied: bool,
) -> bool:
    """Place ``tensor`` without dequantizing it, where it can be: a Linear weight in blocks the C kernels read
    becomes int8 rows at once (or, with a :class:`Q4Maker`, keeps its Q4_0/Q4_1 blocks); a kept-in-blocks
    embedding ties its output projection the same way.
    False (nothing done): the general path places it."""
    if int(tensor.tensor_type) not in GGUF_BLOCK_BYTES or len(tensor.shape) != 2:
        return False
    target = names.get(tensor.name)  # the plain processors keep the GGUF name
    if target is None:
        return False
    shape = (int(tensor.shape[1]), int(tensor.shape[0]))  # ggml lists the fastest-moving dimension first
    owner_name, _, attr = target.rpartition(".")
    owner: Any = model.get_submodule(owner_name)  # a Linear or an Embedding: read as any module with a weight
    if embedding is not None and owner_name == embedding and keep_blocks:
        output = cast(Any, model).get_output_embeddings() if tied else None
        if tied and not _takes_rows(output, maker):
            return False  # the output needs the values
        _check_shape(target, torch.empty(shape, device="meta"), owner.weight)
        _set_module(model, embedding, GGUFEmbedding(tensor.data, tensor.tensor_type, shape[1]))
        if output is not None:
            _set_module(model, _name_of(model, output) or "lm_head", _linear_of(output, tensor, maker, None))
        return True
    if attr != "weight" or not _takes_rows(owner, maker):
        return False
    _check_shape(target, torch.empty(shape, device="meta"), owner.weight)
    # The processor's row order (Llama's q/k permutation), found by processing the row numbers: whole rows
    # move, and quantization (int8 rows) and blocks (q4) are per row, so moving them gives what processing the
    # values would.
    order = processor.process(
        weights=np.arange(shape[0]).reshape(shape[0], 1),
        name=tensor.name,
        tensor_key_mapping=names,
        parsed_parameters={},
    ).weights.reshape(-1)
    index = (
        None if np.array_equal(order, np.arange(shape[0])) else torch.from_numpy(np.array(order, np.int64))
    )
    _set_module(model, owner_name, _linear_of(owner, tensor, maker, index))
    return True


def _linear_of(linear: nn.Linear, tensor: Any, maker: Int8Maker, order: torch.Tensor | None) -> nn.Module:
    """The layer ``maker`` makes of a GGUF tensor in blocks for ``linear`` (rows moved to ``order``): the file's
    Q4_0/Q4_1 blocks as they are when the maker keeps them (:class:`Q4Maker`), else int8 rows."""
    kernel, qtype, cols = maker.kernel, int(tensor.tensor_type), linear.in_features
    if isinstance(maker, Q4Maker) and maker.keeps_blocks(qtype, linear.out_features, cols):
        try:
            return maker.from_blocks(linear, kernel.q4_pack(tensor.data, qtype, cols, order))
        except Q4Overflow:
            log.warning(
                "GGUF tensor %s: a Q4_0 scale too large for the q4 layout, kept as int8 rows", tensor.name
            )
    q, scales = kernel.gguf_rows_int8(tensor.data, qtype, cols)
    if order is not None:
        q, scales = q[order], scales[order]
    return maker.from_rows(linear, q, scales)


def _takes_rows(module: nn.Module | None, maker: Int8Maker) -> bool:
    return (
        type(module) is nn.Linear
        and module.weight.is_meta
        and maker.takes_rows(module.out_features, module.in_features)
    )


@contextlib.contextmanager
def _reuse(path: Path, reader: Any) -> Iterator[None]:
    """Inside: ``gguf.GGUFReader(path)`` is ``reader`` and ``gguf.get_tensor_name_map`` is memoized.

    transformers imports both from ``gguf`` at each call: its GGUF config reader parses the whole file
    again (the slow stock way), and its weights map builds the architecture's name map once per module
    (400 times for SmolLM2, seconds). Other paths, and calls outside, get the stock functions; a lock keeps
    two loads from swapping them at once.
    """
    import gguf

    with _REUSE_LOCK:
        stock_reader, stock_map = gguf.GGUFReader, gguf.get_tensor_name_map

        def reader_for(file: Any, *args: Any, **kwargs: Any) -> Any:
            same = not args and not kwargs and Path(file).resolve() == path.resolve()
            return reader if same else stock_reader(file, *args, **kwargs)

        # setattr: a module attribute swapped for the load (mypy reads the names as a class and a function).
        setattr(gguf, "GGUFReader", reader_for)  # noqa: B010
        setattr(gguf, "get_tensor_name_map", functools.cache(stock_map))  # noqa: B010
        try:
            yield
        finally:
            setattr(gguf, "GGUFReader", stock_reader)  # noqa: B010
            setattr(gguf, "get_tensor_name_map", stock_map)  # noqa: B010


class GGUFEmbedding(nn.Module):
    """An input embedding kept in the GGUF's block format, in the file's memory map, rows dequantized as they are
    looked up.

    Q8_0 holds about 1.06 bytes per value instead of float32's 4 (for SmolLM2 30 MB instead of 113; for a
    128k-token vocabulary of width 4096, 0.56 GB instead of 2.1), and none of it is copied: the blocks are a view
    of the file's map, so only the pages of rows looked up are resident, as clean file-backed pages the kernel can
    drop and every replica on the node shares through the page cache (llama.cpp maps its weights the same way).
    The tied output projection is the int8 copy the decode step reads; the embedding would otherwise be a second
    resident copy of the same values. A lookup dequantizes its rows with the ``gguf`` function that dequantizes the
    whole tensor at load, and that arithmetic is per value, so the rows are the same float32 bits a float32
    embedding would hold; a forward reads a few hundred rows at most. There is no ``weight`` to train or tie:
    ``weight`` is a meta tensor that tells its shape and dtype (the lean forward reads the dtype) and holds no
    values. The file must not be rewritten in place while a replica serves it (a read of a truncated map faults).
    """

    def __init__(self, blocks: np.ndarray, qtype: Any, embedding_dim: int) -> None:
        super().__init__()
        self.blocks = blocks  # uint8 [vocab, bytes per row], a view of the file's map; not in state_dict
        self.qtype = qtype
        self.num_embeddings = blocks.shape[0]
        self.embedding_dim = embedding_dim

    @property
    def weight(self) -> torch.Tensor:
        return torch.empty(self.num_embeddings, self.embedding_dim, device="meta")

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        from gguf import dequantize

        ids = input_ids.reshape(-1).numpy()
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise IndexError(f"token ids outside the embedding's 0..{self.num_embeddings - 1}")
        rows = self.blocks[ids]  # a copy of the rows only
        values = torch.from_numpy(dequantize(rows, self.qtype))
        return values.view(*input_ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {getattr(self.qtype, 'name', self.qtype)}"


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
