"""PEFT LoRA folders as GGUF LoRA adapters, the format llama.cpp loads beside a GGUF base model.

llama.cpp's own converter (``convert_lora_to_gguf.py``) lives in its source tree, not in the ``gguf`` or
``xllamacpp`` wheels, so this writes the same format with ``gguf.GGUFWriter``: metadata
``general.type=adapter``, ``adapter.type=lora``, ``adapter.lora.alpha``, and per target module a pair
``blk.N.<tensor>.weight.lora_a`` (PEFT's lora_A, rank x in) / ``...lora_b`` (lora_B, out x rank) named
after the base GGUF's tensors. Llama GGUFs store the query and key projections with their rows permuted
for llama.cpp's rope layout; lora_B's rows (the output side) get the same permutation, or the adapter
would add its update to the wrong rows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Written beside the PEFT files of an adapter version (and so under the registry checksum).
GGUF_LORA_FILE = "adapter.gguf"

_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<side>[AB])\.weight$")


class LoraConversionError(ValueError):
    """The PEFT folder holds something GGUF LoRA cannot express (DoRA, biases, unknown modules)."""


@dataclass(frozen=True)
class BaseShape:
    """What the conversion needs to know about the base GGUF."""

    architecture: str
    block_count: int
    head_count: int
    head_count_kv: int


def base_shape(base_gguf: Path) -> BaseShape:
    """Architecture and attention head counts, read from the base model's GGUF metadata."""
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))

    def field(name: str) -> object:
        value = reader.fields.get(name)
        if value is None:
            raise LoraConversionError(f"{base_gguf} has no {name} metadata")
        return value.contents()

    arch = str(field("general.architecture"))
    return BaseShape(
        architecture=arch,
        block_count=int(field(f"{arch}.block_count")),  # type: ignore[call-overload]
        head_count=int(field(f"{arch}.attention.head_count")),  # type: ignore[call-overload]
        head_count_kv=int(field(f"{arch}.attention.head_count_kv")),  # type: ignore[call-overload]
    )


def permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """The row order convert_hf_to_gguf gives llama's q/k projections (HF rotate-half -> interleaved)."""
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def convert_peft_to_gguf(peft_folder: Path, out_file: Path, base: BaseShape) -> int:
    """Write ``peft_folder``'s LoRA as a GGUF adapter at ``out_file``; returns the number of tensor pairs.
    The file appears by rename, so a reader never sees half of one."""
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((peft_folder / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA":
        raise LoraConversionError(f"peft_type is {config.get('peft_type')!r}, not LORA")
    for flag in ("use_dora", "use_rslora"):
        if config.get(flag):
            raise LoraConversionError(f"{flag} adapters have no GGUF LoRA form")
    if config.get("alpha_pattern") or config.get("rank_pattern"):
        raise LoraConversionError("per-module alpha or rank patterns have no GGUF LoRA form")
    if config.get("bias", "none") != "none" or config.get("modules_to_save"):
        raise LoraConversionError("LoRA biases and modules_to_save have no GGUF LoRA form")
    arch = gguf.MODEL_ARCH[base.architecture.upper()]
    names = gguf.get_tensor_name_map(arch, base.block_count)
    tensors = load_file(str(peft_folder / "adapter_model.safetensors"))
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        match = _KEY.match(key)
        if match is None:
            raise LoraConversionError(f"unexpected tensor {key!r} in the PEFT weights")
        pairs.setdefault(match["module"], {})[match["side"]] = value.astype(np.float32)
    writer_tmp = out_file.with_name(f".{out_file.name}.tmp")
    writer = gguf.GGUFWriter(str(writer_tmp), base.architecture)
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    for module in sorted(pairs, key=_natural):
        pair = pairs[module]
        if set(pair) != {"A", "B"}:
            raise LoraConversionError(f"{module} lacks lora_A or lora_B")
        name = names.get_name(module)
        if name is None:
            raise LoraConversionError(f"no GGUF tensor for module {module!r}")
        lora_a, lora_b = pair["A"], pair["B"]
        if name.endswith(".attn_q"):
            lora_b = permute_rows(lora_b, base.head_count)
        elif name.endswith(".attn_k"):
            lora_b = permute_rows(lora_b, base.head_count_kv)
        writer.add_tensor(f"{name}.weight.lora_a", np.ascontiguousarray(lora_a))
        writer.add_tensor(f"{name}.weight.lora_b", np.ascontiguousarray(lora_b))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    writer_tmp.replace(out_file)
    return len(pairs)


def _natural(module: str) -> tuple[object, ...]:
    return tuple(int(part) if part.isdigit() else part for part in module.split("."))
