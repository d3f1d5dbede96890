"""Where each prompt's tokens sit in a batch's KV cache, and which rows prefill together.

Pure bookkeeping over token lists and tensors: no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


def left_pad(prompts: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask and position_ids for prompts padded on the left.

    Every row's last prompt token lands in the last column; positions count real tokens only, so a
    row gets the positions (and rotary phases) it would get alone, and the mask hides the padding.
    """
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


@dataclass(frozen=True)
class SplitLayout:
    """A batch whose rows start with cached tokens: ``input_ids`` [batch, S] are the tokens to
    compute; ``attention_mask`` and ``position_ids`` [batch, C + S] cover every cache column,
    ``cached_columns`` = C."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    cached_columns: int

    def computed_start(self, prompt_length: int, cached: int) -> int:
        """The cache column of a row's first computed token (from its prompt length and cached count)."""
        return self.attention_mask.shape[1] - (prompt_length - cached)


def split_layout(prompts: Sequence[list[int]], cached: Sequence[int], pad_id: int) -> SplitLayout:
    """The layout when the first ``cached[r]`` tokens of row ``r`` are already known.

    Cached tokens sit right-aligned in the first ``C = max(cached)`` columns, the tokens still to
    compute right-aligned after them (``.`` is padding, masked out)::

        row 0  [ . . P P P P | . . s s s ]
        row 1  [ P P P P P P | s s s s s ]
        row 2  [ . . . . . . | . s s s s ]
    """
    if len(prompts) != len(cached):
        raise ValueError(f"{len(prompts)} prompts but {len(cached)} cached lengths")
    for prompt, done in zip(prompts, cached, strict=True):
        if not 0 <= done < len(prompt):
            raise ValueError(
                f"a prompt of {len(prompt)} tokens cannot have {done} cached: one must be computed"
            )
    head = max(cached)
    width = max(len(p) - done for p, done in zip(prompts, cached, strict=True))
    ids, mask = [], []
    for prompt, done in zip(prompts, cached, strict=True):
        rest = prompt[done:]
        ids.append([pad_id] * (width - len(rest)) + rest)
        mask.append([0] * (head - done) + [1] * done + [0] * (width - len(rest)) + [1] * len(rest))
    attention_mask = torch.tensor(mask, dtype=torch.long)
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return SplitLayout(torch.tensor(ids, dtype=torch.long), attention_mask, positions, head)


def plan_forwards(remaining: Sequence[int], overhead: int, max_tokens: int | None = None) -> list[list[int]]:
    """Which rows run their prefill together: groups of row indices, cheapest first-to-last.

    A padded forward over a group computes ``len(group) * max(remaining)`` token positions and
    pays ``overhead`` once (reading every weight, the Python around a forward). With a prefix
    cache the rows' remaining lengths differ a lot, and one padded forward would compute every
    row up to the longest. Rows sorted by length are split into consecutive groups of least total
    cost (a small dynamic programme: a batch holds a handful of rows). ``max_tokens``: no group of
    two or more rows computes more positions than that (a forward's temporaries grow with them);
    a longer row still runs, alone.
    """
    order = sorted(range(len(remaining)), key=lambda r: remaining[r])
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[i]: cost of the first i rows of `order`
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(end):
            # Sorted ascending, so the group's longest row is its last.
            positions = (end - start) * remaining[order[end - 1]]
            if max_tokens is not None and end - start > 1 and positions > max_tokens:
                continue
            cost = best[start] + positions + overhead
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups: list[list[int]] = []
    end = n
    while end:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]
