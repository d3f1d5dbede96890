"""The LLM as a sentence encoder: token ids -> hidden states after layer ``exit_layer`` -> one vector.

The intent head reads the base LLM's own hidden states (with the adapter's LoRA applied), so the
classifier measures the same weights that generate answers. Serving and training call the same
functions here: training runs the frozen lower layers once and caches their output
(:func:`run_layers` from 0 to the first LoRA layer), then runs only the upper layers per step;
serving runs all of them in one call. Equal inputs give equal vectors either way.

Sequences are right-padded and run under the plain causal mask: a real token never attends to
a later position, so padding cannot change it, and pooling skips the padded positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Pooling = Literal["mean", "last", "mean_last"]


def decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack (``LlamaModel``) inside a causal LM, whether or not PEFT wraps it."""
    inner = model
    # PeftModel -> LoraModel -> LlamaForCausalLM -> LlamaModel; stop at the module holding `layers`.
    for _ in range(4):
        if hasattr(inner, "layers") and hasattr(inner, "rotary_emb"):
            return inner
        inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner.model
    raise TypeError(f"{type(model).__name__} has no decoder with `layers` and `rotary_emb`")


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text, truncated to ``max_length``; empty texts become one EOS token."""
    encoded = tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_length)
    eos = tokenizer.eos_token_id
    return [ids if ids else [eos] for ids in encoded["input_ids"]]


def pad(
    batch: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and the 0/1 mask of real tokens."""
    width = max(len(ids) for ids in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, row in enumerate(batch):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


def stack(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (length, dim) hidden states into (batch, seq, dim) and the matching 0/1 mask."""
    width = max(s.shape[0] for s in states)
    batch = states[0].new_zeros((len(states), width, states[0].shape[1]))
    mask = torch.zeros((len(states), width), dtype=torch.long, device=states[0].device)
    for i, s in enumerate(states):
        batch[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = 1
    return batch, mask


def embed(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    return decoder(model).embed_tokens(input_ids)


def run_layers(model: torch.nn.Module, hidden: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """Decoder layers ``start`` .. ``end - 1`` on ``hidden`` (batch, seq, dim), causal mask only.

    This is the loop of ``LlamaModel.forward`` without the final norm, so a forward can stop at
    any layer and resume there from cached states.
    """
    from transformers.masking_utils import create_causal_mask

    dec = decoder(model)
    position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
    mask = create_causal_mask(
        config=dec.config,
        inputs_embeds=hidden,
        attention_mask=None,
        past_key_values=None,
        position_ids=position_ids,
    )
    position_embeddings = dec.rotary_emb(hidden, position_ids=position_ids)
    for layer in dec.layers[start:end]:
        hidden = layer(
            hidden, attention_mask=mask, position_ids=position_ids, position_embeddings=position_embeddings
        )
    return hidden


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """One vector per sequence from the real (mask=1) positions of ``hidden``."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    last = hidden[torch.arange(hidden.shape[0], device=hidden.device), mask.sum(1) - 1]
    if pooling == "mean":
        return mean
    if pooling == "last":
        return last
    return torch.cat([mean, last], dim=-1)


def finish(
    model: torch.nn.Module, hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling
) -> torch.Tensor:
    """The model's final RMSNorm, then pooling: the sentence vector the head reads."""
    return pool(decoder(model).norm(hidden), mask, pooling)


def encode(
    model: torch.nn.Module, input_ids: torch.Tensor, mask: torch.Tensor, exit_layer: int, pooling: Pooling
) -> torch.Tensor:
    """Sentence vectors after ``exit_layer`` decoder layers (the serving path: one call, no cache)."""
    hidden = run_layers(model, embed(model, input_ids), 0, exit_layer)
    return finish(model, hidden, mask, pooling)
