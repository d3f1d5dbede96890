"""A Llama model's module tree built from a GGUF's metadata, without transformers.

Importing transformers' Llama modeling (and the config classes it pulls in) costs a replica about
130 MB of resident memory (torch._dynamo, torch.distributed, sympy, ... through its imports), more than
SmolLM2-135M's int8 weights. The lean forward (:mod:`lean_forward`) only reads modules and their
weights, never transformers' ``forward``, so this builds the same tree under the same names
(``model.embed_tokens``, ``model.layers.N.self_attn.q_proj``, ..., ``lm_head``) from plain torch
modules, with a config object carrying the attributes the lean forward and the runner read. PEFT's
adapter files name modules the same way, so adapters load onto it unchanged (:mod:`lora`).

Weights start on the meta device; :mod:`gguf_loader` fills them tensor by tensor. Only what the GGUF's
``llama.*`` metadata describes exactly is built here: plain or linearly scaled rope, no sliding window,
no extra tensors (a Llama 3 file's ``rope_freqs``). Anything else goes through transformers' loader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

ARCHITECTURE = "llama"

# GGUF tensor name -> module path in the tree (per block: blk.N.<key>).
_BLOCK_TENSORS = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_TENSORS = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


@dataclass(frozen=True)
class LlamaConfig:
    """The shape of a Llama model, under the attribute names transformers' config uses (the lean forward
    and the runner read them from either)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    rope_theta: float = 10000.0
    rope_linear_factor: float = 1.0
    eos_token_id: int | None = None
    bos_token_id: int | None = None
    pad_token_id: int | None = None
    model_type: str = ARCHITECTURE
    hidden_act: str = "silu"
    sliding_window: None = None
    rope_parameters: dict[str, Any] = field(default_factory=dict)


def unbuildable_reason(reader: Any) -> str | None:
    """Why the GGUF behind ``reader`` is not a model this module builds (None when it is)."""
    arch = _string(reader, "general.architecture")
    if arch != ARCHITECTURE:
        return f"architecture {arch!r}"
    scaling = _string(reader, f"{arch}.rope.scaling.type") or "none"
    if scaling not in ("none", "linear"):
        return f"rope scaling {scaling!r}"
    unknown = [t.name for t in reader.tensors if gguf_target(t.name) is None]
    if unknown:
        return f"tensors without a place in a plain Llama: {', '.join(unknown[:3])}"
    return None


def config_from_gguf(reader: Any) -> LlamaConfig:
    """The model's shape from the ``llama.*`` metadata (the tokenizer's special ids from ``tokenizer.ggml.*``)."""
    arch = ARCHITECTURE
    hidden = int(_value(reader, f"{arch}.embedding_length"))
    heads = int(_value(reader, f"{arch}.attention.head_count"))
    vocab = _value(reader, f"{arch}.vocab_size", None)
    if vocab is None:  # older files: the vocabulary's length
        vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    scaling = _string(reader, f"{arch}.rope.scaling.type") or "none"
    factor = float(_value(reader, f"{arch}.rope.scaling.factor", 1.0)) if scaling == "linear" else 1.0
    names = {t.name for t in reader.tensors}
    return LlamaConfig(
        vocab_size=int(vocab),
        hidden_size=hidden,
        intermediate_size=int(_value(reader, f"{arch}.feed_forward_length")),
        num_hidden_layers=int(_value(reader, f"{arch}.block_count")),
        num_attention_heads=heads,
        num_key_value_heads=int(_value(reader, f"{arch}.attention.head_count_kv", heads)),
        head_dim=int(_value(reader, f"{arch}.attention.key_length", hidden // heads)),
        rms_norm_eps=float(_value(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        max_position_embeddings=int(_value(reader, f"{arch}.context_length", 2048)),
        tie_word_embeddings="output.weight" not in names,
        rope_theta=float(_value(reader, f"{arch}.rope.freq_base", 10000.0)),
        rope_linear_factor=factor,
        eos_token_id=_optional_int(reader, "tokenizer.ggml.eos_token_id"),
        bos_token_id=_optional_int(reader, "tokenizer.ggml.bos_token_id"),
        pad_token_id=_optional_int(reader, "tokenizer.ggml.padding_token_id"),
        rope_parameters={"rope_type": "linear" if scaling == "linear" else "default"},
    )


def gguf_target(tensor_name: str) -> str | None:
    """The parameter a GGUF tensor fills (``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``)."""
    stem, _, attr = tensor_name.rpartition(".")
    if attr != "weight":
        return None
    if stem in _TOP_TENSORS:
        return f"{_TOP_TENSORS[stem]}.weight"
    parts = stem.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _BLOCK_TENSORS:
        return f"model.layers.{parts[1]}.{_BLOCK_TENSORS[parts[2]]}.weight"
    return None


def rope_row_order(tensor_name: str, rows: int, config: LlamaConfig) -> Any:
    """The row order that undoes the permutation convert_hf_to_gguf gives the query and key projections
    (llama.cpp's interleaved rope layout back to the rotate-half one); None for other tensors."""
    import numpy as np

    if ".attn_q." in tensor_name:
        heads = config.num_attention_heads
    elif ".attn_k." in tensor_name:
        heads = config.num_key_value_heads
    else:
        return None
    return np.arange(rows).reshape(heads, rows // heads // 2, 2).swapaxes(1, 2).reshape(-1)


class RMSNorm(nn.Module):
    """Llama's RMSNorm weights (the forward is the lean forward's fused kernel or ``F.rms_norm``)."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(size, device="meta"))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.rms_norm(x, self.weight.shape, self.weight, self.variance_epsilon)


class RotaryEmbedding(nn.Module):
    """cos/sin tables of rotary position embedding, as transformers' default (or linear) rope computes them."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        dim = config.head_dim
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        self.inv_freq = inv_freq / config.rope_linear_factor

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        hidden, dim = config.hidden_size, config.head_dim
        self.q_proj = _linear(hidden, config.num_attention_heads * dim)
        self.k_proj = _linear(hidden, config.num_key_value_heads * dim)
        self.v_proj = _linear(hidden, config.num_key_value_heads * dim)
        self.o_proj = _linear(config.num_attention_heads * dim, hidden)
        self.scaling = dim**-0.5


class MLP(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = _linear(config.hidden_size, config.intermediate_size)
        self.up_proj = _linear(config.hidden_size, config.intermediate_size)
        self.down_proj = _linear(config.intermediate_size, config.hidden_size)
        self.act_fn = nn.SiLU()


class DecoderLayer(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.self_attn = Attention(config)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class LlamaBody(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        # Given its (empty) weight, the embedding skips its random init: normal_ on the meta device runs
        # torch's reference implementation, which imports torch._dynamo and sympy (about 60 MB resident).
        shape = (config.vocab_size, config.hidden_size)
        self.embed_tokens: nn.Module = nn.Embedding(*shape, _weight=torch.empty(shape, device="meta"))
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)


class LlamaForCausalLM(nn.Module):
    """The module tree of transformers' ``LlamaForCausalLM`` (weights and names), run by the lean forward."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.model = LlamaBody(config)
        self.lm_head: nn.Module = _linear(config.hidden_size, config.vocab_size)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head


def _linear(inputs: int, outputs: int) -> nn.Linear:
    return nn.Linear(inputs, outputs, bias=False, device="meta")


def _value(reader: Any, key: str, default: Any = ...) -> Any:
    field = reader.fields.get(key)
    if field is None:
        if default is ...:
            raise ValueError(f"the GGUF has no {key} metadata")
        return default
    return field.contents()


def _string(reader: Any, key: str) -> str | None:
    value = _value(reader, key, None)
    return None if value is None else str(value)


def _optional_int(reader: Any, key: str) -> int | None:
    value = _value(reader, key, None)
    return None if value is None else int(value)
