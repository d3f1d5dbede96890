"""Loading the base LLM for training: fp32 LoRA on CPU, QLoRA (4-bit NF4) on CUDA.

QLoRA is the same job with the frozen base weights stored in 4-bit NormalFloat with double
quantization (bitsandbytes), compute in bfloat16, and LoRA matrices trained on top after
``prepare_model_for_kbit_training``. The published adapter is plain LoRA either way: it loads on
an unquantized base in vLLM or transformers+PEFT.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class LoadedBase:
    model: Any  # a PeftModel around a (possibly 4-bit) LlamaForCausalLM truncated at the exit layer
    tokenizer: Any
    device: str
    quantized: bool


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for but torch sees no CUDA device")
    return device


def resolve_quantization(quantization: str, device: str) -> bool:
    """True for 4-bit NF4. ``auto`` quantizes exactly when training on CUDA; nf4 on CPU is an error."""
    if quantization == "auto":
        return device == "cuda"
    if quantization == "nf4" and device != "cuda":
        raise RuntimeError("quantization: nf4 (QLoRA) needs a CUDA device; use none or auto on CPU")
    return quantization == "nf4"


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX); read from /proc/cpuinfo, since
    machines differ (Linux only; elsewhere False). Without it bfloat16 matmuls are emulated and slower."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = {
        f for line in cpuinfo.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()
    }
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device: str) -> Any:
    """The autocast dtype of the answer stage (``torch.bfloat16``), or None for plain float32."""
    import torch

    if precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    native = torch.cuda.is_bf16_supported() if device == "cuda" else cpu_has_bf16()
    return torch.bfloat16 if native else None


def nf4_config() -> Any:
    """4-bit NF4 with double quantization and bfloat16 compute: the QLoRA recipe."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def load_base(config: TrainConfig, base_path: Path) -> LoadedBase:
    """Base model truncated at the exit layer (nothing above it is ever run), with LoRA attached."""
    return _load(config, base_path, config.lora_layer_ids, num_layers=config.head.exit_layer)


def load_generator(config: TrainConfig, base_path: Path) -> LoadedBase:
    """The whole base model with LoRA on the answer layers (``answers.first_layer`` to the top): the adapter
    the generator serves. The intent head keeps its own LoRA (trained on the truncated model, published in
    the version's ``intent_lora/``), so neither is ever run with deltas trained for the other job."""
    from transformers import AutoConfig

    total = AutoConfig.from_pretrained(str(base_path)).num_hidden_layers
    return _load(config, base_path, list(range(config.answers.first_layer, total)), num_layers=None)


def _load(config: TrainConfig, base_path: Path, layer_ids: list[int], num_layers: int | None) -> LoadedBase:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(config.device)
    quantized = resolve_quantization(config.quantization, device)
    kwargs: dict[str, Any] = {"num_hidden_layers": num_layers} if num_layers else {}
    if quantized:
        kwargs |= {"quantization_config": nf4_config(), "device_map": {"": 0}, "dtype": torch.bfloat16}
    else:
        kwargs |= {"dtype": torch.float32}
    model = AutoModelForCausalLM.from_pretrained(str(base_path), **kwargs)
    if not quantized:
        model = model.to(device)
    if quantized:
        # Casts norms to fp32 and freezes the base; the cached-prefix training needs no checkpointing.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(config.lora.target_modules),
        layers_to_transform=layer_ids,
        layers_pattern="layers",
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    tokenizer = AutoTokenizer.from_pretrained(str(base_path))
    log.info("base loaded on %s (%s), LoRA on layers %s", device, "nf4" if quantized else "fp32", layer_ids)
    return LoadedBase(model=model, tokenizer=tokenizer, device=device, quantized=quantized)
