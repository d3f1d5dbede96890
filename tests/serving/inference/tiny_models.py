"""A tiny Llama of transformers' real class with random weights, for tests of routing, dtypes and refusals that
do not depend on trained weights and should run in milliseconds."""

from __future__ import annotations

import torch


def tiny_llama(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    return LlamaForCausalLM(config).to(dtype).eval()
