"""Tuning the generator for the bank's answers: supervised fine-tuning on the prompts serving builds.

Each training row becomes one example: the prompt is exactly what a chat request with that question
sends to the generator (serving's own guard, retrieval, context guard, prompt builder and the
tokenizer's chat template; the knowledge of the row's intent first, as serving puts the classified
intent's), and the target is the bank's curated answer for the row's intent (the knowledge the
prompt carries, so the target adds no fact), closed by the chat template's end-of-turn token.

The LoRA the customer's answers run through is trained here, on the whole model (every layer runs,
as in generation), on layers ``answers.first_layer`` .. the top. It is the version's top-level PEFT
adapter, the one vLLM and the CPU engine load. The intent head keeps its own LoRA (``intent_lora/``),
trained for the head on the truncated model: neither LoRA ever runs with deltas trained for the other.

Cost on CPU: layers below ``first_layer`` carry no LoRA, so their output is
computed once per example and cached (exact: the same causal mask and positions); each step runs
only the upper layers, and the LM head only at the target positions. Where the hardware multiplies
bfloat16 natively (``precision: auto``), the forward and backward run under bfloat16 autocast: 1.3-1.45x
per step on an AVX-512 BF16 CPU (bench/bench_answer_step.py), the LoRA weights and AdamW in float32.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from pydantic import Field

from finserve.contracts import StrictModel
from finserve.serving.inference.chat import render_prompt
from finserve.serving.inference.types import ChatMessage
from finserve.serving.intent import encoder

from .config import AnswerSettings
from .model import resolve_precision
from .trainer import cache_states, length_batches, schedule

log = logging.getLogger(__name__)

END_OF_TURN = "<|im_end|>"  # SmolLM2's chat template closes every turn with it; generation stops there


class PromptSource(Protocol):
    """What builds serving's prompt for a question (the in-process pipeline's :meth:`prompt_for`)."""

    async def prompt_for(self, text: str, intent: str, tenant: str = "default") -> list[ChatMessage]: ...


@dataclass(frozen=True)
class Example:
    prompt: list[int]
    target: list[int]


class AnswerEpoch(StrictModel):
    """One pass over the answer examples."""

    epoch: int = Field(ge=1, description="1-based epoch number.")
    train_loss: float = Field(description="Mean cross-entropy per target token over the epoch's steps.")
    dev_loss: float | None = Field(
        None, description="Mean cross-entropy per target token on the dev examples."
    )
    seconds: float = Field(ge=0, description="Wall time of the epoch.")


@dataclass
class TrainedAnswers:
    epochs: list[AnswerEpoch]
    examples: int
    dev_examples: int
    base_dev_loss: (
        float | None
    )  # the dev loss before any step (the LoRA starts as the identity: the base model)
    cache_seconds: float
    prompt_tokens_mean: float
    target_tokens_mean: float
    compute_dtype: str = "float32"  # what precision "auto" resolved to on this machine


def build_examples(
    source: PromptSource,
    tokenizer: Any,
    rows: Sequence[tuple[str, str]],
    answers: dict[str, str],
    on_row: Callable[[], None] | None = None,
) -> list[Example]:
    """One (prompt ids, target ids) pair per row, prompts through serving's own path."""

    async def run() -> list[Example]:
        out: list[Example] = []
        for text, intent in rows:
            messages = await source.prompt_for(text, intent)
            prompt = render_prompt(tokenizer, messages)
            target = tokenizer(answers[intent].strip() + END_OF_TURN, add_special_tokens=False)["input_ids"]
            out.append(Example(prompt=list(prompt), target=list(target)))
            if on_row:
                on_row()
        return out

    return asyncio.run(run())


def _loss(
    model: Any, states: Sequence[torch.Tensor], examples: Sequence[Example], first: int
) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the target tokens of a batch, and their count."""
    batch, _ = encoder.stack(states)
    dec = encoder.decoder(model)
    hidden = dec.norm(encoder.run_layers(model, batch, first, len(dec.layers)))
    # Position t predicts token t + 1: the last prompt position predicts the first target token.
    rows, cols, labels = [], [], []
    for i, e in enumerate(examples):
        start = len(e.prompt) - 1
        rows += [i] * len(e.target)
        cols += list(range(start, start + len(e.target)))
        labels += e.target
    picked = hidden[torch.tensor(rows), torch.tensor(cols)]
    logits = _lm_head(model)(picked).float()
    target = torch.tensor(labels, device=logits.device)
    return torch.nn.functional.cross_entropy(logits, target, reduction="sum"), len(labels)


def _lm_head(model: Any) -> torch.nn.Module:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.lm_head


def fit_answers(
    settings: AnswerSettings,
    model: Any,
    tokenizer: Any,
    device: str,
    examples: Sequence[Example],
    dev: Sequence[Example] = (),
    seed: int = 77,
    progress: bool = True,
) -> TrainedAnswers:
    """Train the LoRA parameters that require grad (the caller froze the rest) on ``examples``."""
    from tqdm.auto import tqdm

    first = settings.first_layer
    dtype = resolve_precision(settings.precision, device)
    log.info("answers: %s compute", "bfloat16 autocast" if dtype is not None else "float32")

    def compute() -> contextlib.AbstractContextManager[Any]:
        return torch.autocast(device, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    torch.manual_seed(seed)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    model.eval()
    with tqdm(
        total=len(examples) + len(dev),
        desc=f"answers: cache layers 0-{first - 1}",
        unit="ex",
        disable=not progress,
    ) as bar:
        # Prompt and target in one sequence: the target's states attend to the prompt's.
        with compute():
            states = cache_states(
                model,
                [e.prompt + e.target for e in examples],
                first,
                pad_id,
                device,
                batch_size=8,
                on_batch=bar.update,
            )
            dev_states = (
                cache_states(
                    model,
                    [e.prompt + e.target for e in dev],
                    first,
                    pad_id,
                    device,
                    batch_size=8,
                    on_batch=bar.update,
                )
                if dev
                else []
            )
    cache_seconds = time.perf_counter() - t0
    base_dev_loss = _dev_loss(model, dev_states, dev, first, compute) if dev else None

    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    lengths = [len(e.prompt) + len(e.target) for e in examples]
    steps_per_epoch = len(length_batches(lengths, settings.batch_size, random.Random(0)))
    total = steps_per_epoch * settings.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, schedule(total, max(1, int(total * settings.warmup_ratio)))
    )
    epochs: list[AnswerEpoch] = []
    for epoch in range(1, settings.epochs + 1):
        e0 = time.perf_counter()
        model.train()
        loss_sum, tokens = 0.0, 0
        batches = length_batches(lengths, settings.batch_size, rng)
        with tqdm(
            total=len(examples),
            desc=f"answers: epoch {epoch}/{settings.epochs}",
            unit="ex",
            disable=not progress,
        ) as bar:
            for batch in batches:
                with compute():
                    loss, n = _loss(model, [states[i] for i in batch], [examples[i] for i in batch], first)
                (loss / n).backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optim.step()
                sched.step()
                optim.zero_grad(set_to_none=True)
                loss_sum, tokens = loss_sum + loss.item(), tokens + n
                bar.update(len(batch))
                bar.set_postfix(loss=f"{loss_sum / max(1, tokens):.3f}")
        dev_loss = _dev_loss(model, dev_states, dev, first, compute) if dev else None
        epochs.append(
            AnswerEpoch(
                epoch=epoch,
                train_loss=round(loss_sum / max(1, tokens), 4),
                dev_loss=round(dev_loss, 4) if dev_loss is not None else None,
                seconds=round(time.perf_counter() - e0, 1),
            )
        )
        log.info(
            "answers epoch %d: train loss %.4f, dev loss %s, %.0f s",
            epoch,
            epochs[-1].train_loss,
            epochs[-1].dev_loss,
            epochs[-1].seconds,
        )
    model.eval()
    return TrainedAnswers(
        epochs=epochs,
        examples=len(examples),
        dev_examples=len(dev),
        cache_seconds=cache_seconds,
        base_dev_loss=round(base_dev_loss, 4) if base_dev_loss is not None else None,
        prompt_tokens_mean=sum(len(e.prompt) for e in examples) / max(1, len(examples)),
        target_tokens_mean=sum(len(e.target) for e in examples) / max(1, len(examples)),
        compute_dtype="bfloat16" if dtype is not None else "float32",
    )


def _dev_loss(
    model: Any,
    states: Sequence[torch.Tensor],
    examples: Sequence[Example],
    first: int,
    compute: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), compute():
        for start in range(0, len(examples), 8):
            loss, n = _loss(model, states[start : start + 8], examples[start : start + 8], first)
            total, count = total + loss.item(), count + n
    return total / max(1, count)
