"""The decode loop: a batch of rows, each with its own prompt, adapter, sampling and stop rules.

One prefill over the left-padded prompts (prefixes the runner has cached are copied in, not
computed), then one token per row per step with a shared KV cache.
Rows that finish (end token, stop string, max tokens, cancelled) leave the batch at once, so
the cache and the work shrink with them. Blocking: the engine runs it in a worker thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from .model_runner import ModelRunner
from .sampling import SamplingSpec, next_tokens
from .text_stream import TextAssembler
from .types import FinishReason

log = logging.getLogger(__name__)


class DecodeRow(Protocol):
    """One request as the decoder sees it; the callbacks are called from the worker thread."""

    prompt_ids: list[int]
    adapter_name: str | None
    max_new_tokens: int
    sampling: SamplingSpec
    stops: list[str]
    cancelled: bool
    cached_tokens: int  # set by the decoder: prompt tokens that came from the prefix cache

    def on_delta(self, text: str) -> None: ...

    def on_finish(self, reason: FinishReason, completion_tokens: int) -> None: ...

    def on_error(self, exc: BaseException) -> None: ...


@dataclass
class BatchCounts:
    """What one batch cost, for the engine's counters (the same figures llama.cpp's server reports)."""

    prompt_tokens: int = 0  # computed at prefill (prefix-cache hits excluded)
    generated_tokens: int = 0
    prompt_seconds: float = 0.0
    generate_seconds: float = 0.0  # from the end of prefill to each row's last token, summed over rows


def decode_batch(runner: ModelRunner, rows: Sequence[DecodeRow]) -> BatchCounts:
    """Generate every row to completion, reporting through each row's callbacks."""
    counts = BatchCounts()
    live = [i for i, r in enumerate(rows) if not r.cancelled]  # batch position -> row index
    # Rows of one adapter side by side: the LoRA delta is then one matmul per adapter and layer.
    live.sort(key=lambda i: (rows[i].adapter_name is not None, rows[i].adapter_name or ""))
    if not live:
        return counts
    try:
        _decode(runner, rows, live, counts)
    except Exception as exc:  # the model failed mid-batch: every unfinished row learns why
        log.exception("decode step failed for a batch of %d", len(live))
        for i in live:
            rows[i].on_error(exc)
    return counts


def _decode(runner: ModelRunner, rows: Sequence[DecodeRow], live: list[int], batch: BatchCounts) -> None:
    texts = {i: TextAssembler(runner.decode, rows[i].stops) for i in live}
    generators = {i: rows[i].sampling.generator() for i in live}
    counts = dict.fromkeys(live, 0)
    began = time.perf_counter()
    start = runner.prefill([rows[i].prompt_ids for i in live], [rows[i].adapter_name for i in live])
    prefilled = time.perf_counter()
    batch.prompt_seconds += prefilled - began
    logits, cache, mask, positions = start.logits, start.cache, start.attention_mask, start.position_ids
    for i, cached in zip(live, start.cached_tokens, strict=True):
        rows[i].cached_tokens = cached
        batch.prompt_tokens += len(rows[i].prompt_ids) - cached
    while True:
        picked = next_tokens(logits, [rows[i].sampling for i in live], [generators[i] for i in live]).tolist()
        keep: list[int] = []
        for slot, i in enumerate(live):
            if _advance(runner, rows[i], texts[i], picked[slot], counts, i):
                keep.append(slot)
            else:
                batch.generated_tokens += counts[i]
                batch.generate_seconds += time.perf_counter() - prefilled
        if not keep:
            return
        if len(keep) < len(live):
            index = torch.tensor(keep, dtype=torch.long)
            cache.batch_select_indices(index)
            mask, positions = mask[index], positions[index]
            live = [live[s] for s in keep]
        step = torch.tensor([[picked[s]] for s in keep], dtype=torch.long)
        mask = torch.cat([mask, torch.ones((len(live), 1), dtype=mask.dtype)], dim=1)
        positions = positions[:, -1:] + 1
        logits = runner.forward(step, mask, positions, cache, [rows[i].adapter_name for i in live])


def _advance(
    runner: ModelRunner, row: DecodeRow, text: TextAssembler, token: int, counts: dict[int, int], i: int
) -> bool:
    """Apply one generated token to a row; False when the row is finished."""
    if row.cancelled:
        return False
    counts[i] += 1
    if token in runner.eos_ids:
        _flush(row, text.finish())
        row.on_finish("stop", counts[i])
        return False
    _flush(row, text.push(token))
    if text.stopped:
        row.on_finish("stop", counts[i])
        return False
    if counts[i] >= row.max_new_tokens:
        _flush(row, text.finish())
        row.on_finish("length", counts[i])
        return False
    return True


def _flush(row: DecodeRow, delta: str) -> None:
    if delta:
        row.on_delta(delta)
