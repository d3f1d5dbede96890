"""Choosing the next token for each row of a batch: greedy, or temperature + top-p with a seed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingSpec:
    """How one row picks its tokens."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def generator(self) -> torch.Generator | None:
        """A private RNG per row, so a seeded request samples the same text whatever its batch."""
        if self.greedy:
            return None
        gen = torch.Generator()
        if self.seed is None:
            gen.seed()
        else:
            gen.manual_seed(self.seed)
        return gen


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero all but the smallest set of tokens whose probability mass reaches ``top_p`` (1-D)."""
    if top_p >= 1.0:
        return probs
    sorted_p, order = torch.sort(probs, descending=True)
    cumulative = torch.cumsum(sorted_p, dim=-1)
    # Keep a token if the mass before it is still below top_p (the top token is always kept).
    keep_sorted = (cumulative - sorted_p) < top_p
    keep = torch.zeros_like(keep_sorted)
    keep[order] = keep_sorted
    return probs * keep


def next_tokens(
    logits: torch.Tensor, specs: Sequence[SamplingSpec], generators: Sequence[torch.Generator | None]
) -> torch.Tensor:
    """One token id per row of ``logits`` (shape [rows, vocab])."""
    out = logits.argmax(dim=-1)
    for row, (spec, gen) in enumerate(zip(specs, generators, strict=True)):
        if spec.greedy:
            continue
        probs = torch.softmax(logits[row].float() / spec.temperature, dim=-1)
        probs = top_p_filter(probs, spec.top_p)
        out[row] = torch.multinomial(probs, 1, generator=gen)[0]
    return out
