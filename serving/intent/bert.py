"""A BERT encoder for serving a version's fine-tuned sentence encoder, without transformers.

The Generator replica runs each version's fine-tuned MiniLM (sentence_encoder.py) beside the LLM's head. Through
transformers' ``BertModel`` and ``AutoTokenizer`` that cost the replica about 80 MB beyond the weights themselves
(the replica with the heads on the engine's model: 667 -> 588 MB; docs/benchmarks.md, "The intent head on the
engine's model"), and it was the last reason the replica imported transformers. This module
builds the same modules under the same names (``embeddings.*``, ``encoder.layer.N.attention.self.query`` ...), so
a checkpoint's and a version's tensors load by name, and tokenizes with ``tokenizers`` from the folder's
tokenizer.json, set up as transformers' call ``tokenizer(texts, padding=True, truncation=True, max_length=n)`` is.
Inference only: no dropout. Training keeps transformers' classes (their dropout is part of what it trains with);
tests check the two give the same probabilities.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class BertShape:
    """What config.json says about the encoder's shape (the fields a BERT forward needs)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float

    @classmethod
    def read(cls, folder: Path) -> BertShape:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        unsupported = {
            "model_type": (config.get("model_type"), "bert"),
            "hidden_act": (config.get("hidden_act", "gelu"), "gelu"),
            "position_embedding_type": (config.get("position_embedding_type", "absolute"), "absolute"),
        }
        for key, (have, want) in unsupported.items():
            if have != want:
                raise ValueError(f"{folder}/config.json: {key} {have!r} (this encoder runs {want!r} only)")
        return cls(**{name: config[name] for name in cls.__dataclass_fields__})


class _Embeddings(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.word_embeddings = _embedding(shape.vocab_size, shape.hidden_size)
        self.position_embeddings = _embedding(shape.max_position_embeddings, shape.hidden_size)
        self.token_type_embeddings = _embedding(shape.type_vocab_size, shape.hidden_size)
        self.LayerNorm = nn.LayerNorm(shape.hidden_size, eps=shape.layer_norm_eps, device="meta")

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(x + self.position_embeddings(positions))


def _embedding(rows: int, width: int) -> nn.Embedding:
    # Given its (empty) weight, the embedding skips its random init: normal_ on the meta device imports
    # torch._dynamo and sympy, about 70 MB resident for nothing (FINDINGS.md; llama_model.py does the same).
    return nn.Embedding(rows, width, _weight=torch.empty((rows, width), device="meta"))


class _SelfAttention(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.heads = shape.num_attention_heads
        self.query, self.key, self.value = (
            nn.Linear(shape.hidden_size, shape.hidden_size, device="meta") for _ in range(3)
        )


class _Output(nn.Module):
    """A dense layer, then LayerNorm over it plus the residual (BERT's two ``output`` blocks)."""

    def __init__(self, inner: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(inner, hidden, device="meta")
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps, device="meta")

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.self = _SelfAttention(shape)
        self.output = _Output(shape.hidden_size, shape.hidden_size, shape.layer_norm_eps)


class _Intermediate(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.dense = nn.Linear(shape.hidden_size, shape.intermediate_size, device="meta")


class BertLayer(nn.Module):
    """One encoder layer; called as transformers' BertLayer is (``layer(hidden, attention_mask=additive)``)."""

    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.attention = _Attention(shape)
        self.intermediate = _Intermediate(shape)
        self.output = _Output(shape.intermediate_size, shape.hidden_size, shape.layer_norm_eps)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``attention_mask``: additive, broadcastable to [batch, heads, queries, keys] (0 or a large negative)."""
        attn = self.attention.self
        batch, steps, width = hidden.shape

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, steps, attn.heads, width // attn.heads).transpose(1, 2)

        context = F.scaled_dot_product_attention(
            heads(attn.query(hidden)),
            heads(attn.key(hidden)),
            heads(attn.value(hidden)),
            attn_mask=attention_mask,
        )
        attended = self.attention.output(context.transpose(1, 2).reshape(batch, steps, width), hidden)
        return self.output(F.gelu(self.intermediate.dense(attended)), attended)


class _Encoder(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(shape) for _ in range(shape.num_hidden_layers))


@dataclass(frozen=True)
class _Config:
    hidden_size: int


class BertEncoder(nn.Module):
    """``embeddings`` and ``encoder.layer`` as in transformers' BertModel (no pooler: mean pooling is the
    caller's), weights from the folder's model.safetensors."""

    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.shape = shape
        self.config = _Config(shape.hidden_size)
        self.embeddings = _Embeddings(shape)
        self.encoder = _Encoder(shape)

    def sharing(self, own: Sequence[int]) -> BertEncoder:
        """An encoder whose embeddings and layers are this one's modules, except layers ``own``: copies, for a
        version's trained layers to be loaded into. Versions of one base then hold one copy of what they did
        not train (a canary's second version costs its top layers, not the whole encoder again)."""
        clone = BertEncoder.__new__(BertEncoder)
        nn.Module.__init__(clone)
        clone.shape, clone.config, clone.embeddings = self.shape, self.config, self.embeddings
        clone.encoder = _Encoder.__new__(_Encoder)
        nn.Module.__init__(clone.encoder)
        clone.encoder.layer = nn.ModuleList(
            copy.deepcopy(layer) if i in own else layer for i, layer in enumerate(self.encoder.layer)
        )
        return clone.eval()

    @classmethod
    def from_folder(cls, folder: Path) -> BertEncoder:
        from safetensors.torch import load_file

        model = cls(BertShape.read(folder))
        tensors = load_file(str(folder / "model.safetensors"))
        wanted = set(model.state_dict())
        missing = wanted - set(tensors)
        if missing:
            raise ValueError(f"{folder}/model.safetensors lacks {sorted(missing)[:4]}")
        # The pooler and position_ids buffer of a BertModel checkpoint are not ours: the rest loads by name.
        model.load_state_dict({k: v for k, v in tensors.items() if k in wanted}, strict=True, assign=True)
        return model.eval()


class BatchTokenizer:
    """tokenizer.json, padded to the longest text and truncated at ``max_length`` as transformers' fast tokenizer
    is by ``tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")``."""

    def __init__(self, folder: Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
        pad = config.get("pad_token", "[PAD]")
        pad = pad.get("content", "[PAD]") if isinstance(pad, dict) else str(pad)
        pad_id = self._tokenizer.token_to_id(pad)
        if pad_id is None:
            raise ValueError(f"{folder}: the pad token {pad!r} is not in tokenizer.json")
        self._tokenizer.enable_truncation(max_length=max_length)
        self._tokenizer.enable_padding(pad_id=pad_id, pad_token=pad)

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        encoded = self._tokenizer.encode_batch(list(texts))
        columns: dict[str, Any] = {
            "input_ids": [e.ids for e in encoded],
            "token_type_ids": [e.type_ids for e in encoded],
            "attention_mask": [e.attention_mask for e in encoded],
        }
        return {name: torch.tensor(rows, dtype=torch.long) for name, rows in columns.items()}
