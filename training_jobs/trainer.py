"""The training loop: LoRA on the upper decoder layers plus an intent head, early-stopped on validation.

Cost is what shapes it. The decoder layers below the LoRA ones are frozen, so their output for
each query is computed once (:func:`cache_states`) and every step runs only the LoRA layers, the
final norm and the head. That is exact, not an approximation: nothing trainable sits below.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import Field

from finserve.contracts import StrictModel
from finserve.serving.intent import encoder
from finserve.serving.intent.head import IntentHead
from finserve.serving.intent.vote import blend

from . import metrics
from .config import TrainConfig
from .votes import mixed_predictions

log = logging.getLogger(__name__)


class EpochReport(StrictModel):
    """What one epoch did."""

    epoch: int = Field(description="1-based epoch number.")
    train_loss: float = Field(description="Mean training loss over the epoch's steps.")
    accuracy: float = Field(
        description="Validation accuracy as served: the head mixed with the retrieval vote."
    )
    macro_f1: float = Field(description="Validation macro-F1 as served.")
    head_accuracy: float = Field(description="Validation accuracy of the head alone.")
    dev_accuracy: float | None = Field(
        None, description="Dev-split accuracy as served (what picks the epoch when there is a dev split)."
    )
    dev_head_accuracy: float | None = Field(None, description="Dev-split accuracy of the head alone.")
    seconds: float = Field(description="Wall time of the epoch's training steps.")
    rows_per_s: float = Field(description="Training rows per second in the epoch.")


@dataclass(frozen=True)
class QueryVectors:
    """The retrieval embedder's unit vectors of each row (for a head with ``head.query_embedding``)."""

    embedder: str  # Embedder.model_id: serving checks it runs the same weights
    train: np.ndarray
    validation: np.ndarray
    dev: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])


@dataclass(frozen=True)
class EncoderProbs:
    """The version's fine-tuned encoder on the scored rows: blended into the served mix with ``weight``."""

    weight: float
    validation: np.ndarray
    dev: np.ndarray | None = None


@dataclass
class Trained:
    """The best epoch's weights and how training went."""

    model: Any  # PeftModel with the best LoRA weights loaded
    head: IntentHead
    labels: list[str]
    epochs: list[EpochReport]
    best_epoch: int
    cache_seconds: float
    weight_sweep: dict[str, float]  # served validation accuracy per retrieval weight, at the best epoch
    retrieval_weight: float  # the mix weight serving uses (config's, or chosen on the dev split)
    best: EpochReport  # the best epoch, scored on validation at the served weight
    dev_weight_sweep: dict[str, float] | None = None  # served dev accuracy per weight, at the best epoch
    queries: QueryVectors | None = None  # set when the head reads query embeddings


def cache_states(
    model: Any,
    ids: Sequence[list[int]],
    layers: int,
    pad_id: int,
    device: str,
    batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:
    """Hidden states after the first ``layers`` decoder layers, one (length, dim) tensor per query."""
    out: list[torch.Tensor | None] = [None] * len(ids)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths: little padding
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            input_ids, _ = encoder.pad([ids[i] for i in chunk], pad_id, device)
            hidden = encoder.run_layers(model, encoder.embed(model, input_ids), 0, layers)
            for row, i in enumerate(chunk):
                out[i] = hidden[row, : len(ids[i])].clone()
            if on_batch:
                on_batch(len(chunk))
    return [t for t in out if t is not None]


def length_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar-length rows: shuffle, sort within pools of 50 batches, shuffle batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _logits(
    model: Any,
    head: IntentHead,
    states: Sequence[torch.Tensor],
    config: TrainConfig,
    query: torch.Tensor | None = None,
) -> torch.Tensor:
    batch, mask = encoder.stack(states)
    start = config.head.exit_layer - config.lora.layers
    hidden = encoder.run_layers(model, batch, start, config.head.exit_layer)
    return head(encoder.finish(model, hidden, mask, config.head.pooling), query)


def probabilities(
    model: Any,
    head: IntentHead,
    states: Sequence[torch.Tensor],
    config: TrainConfig,
    batch_size: int = 64,
    queries: np.ndarray | None = None,
) -> np.ndarray:
    """Head probabilities (rows in input order) from cached prefix states (and query vectors, if the head reads them)."""
    model.eval()
    head.eval()
    order = sorted(range(len(states)), key=lambda i: states[i].shape[0])
    out = np.zeros((len(states), head.linear.out_features), dtype=np.float32)
    device = head.linear.weight.device
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            query = torch.from_numpy(queries[chunk]).to(device) if queries is not None else None
            probs = torch.softmax(
                _logits(model, head, [states[i] for i in chunk], config, query).float(), dim=-1
            )
            out[chunk] = probs.cpu().numpy()
    return out


def schedule(total: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def fit(
    config: TrainConfig,
    model: Any,
    tokenizer: Any,
    device: str,
    train_rows: Sequence[tuple[str, str]],
    val_rows: Sequence[tuple[str, str]],
    labels: list[str],
    val_votes: Sequence[dict[str, float]] | None = None,
    progress: bool = True,
    dev_rows: Sequence[tuple[str, str]] = (),
    dev_votes: Sequence[dict[str, float]] | None = None,
    queries: QueryVectors | None = None,
    encoder_probs: EncoderProbs | None = None,
) -> Trained:
    """Train LoRA + head on ``train_rows``; score each epoch; keep the best epoch.

    ``val_votes``: the retrieval vote for each validation row (see votes.py). With a positive
    ``head.retrieval_weight`` the epochs are scored as served: head mixed with vote. With
    ``dev_rows`` (and their ``dev_votes``) the dev split picks the epoch (and, with
    ``head.weight_from_dev``, the mix weight); validation is then only reported. ``queries``: the
    rows' query embeddings, required exactly when ``head.query_embedding`` is set. ``encoder_probs``:
    the version's fine-tuned encoder on validation (and dev) rows, blended in as serving does.
    """
    weight = config.head.retrieval_weight
    if weight > 0 and (val_votes is None or len(val_votes) != len(val_rows)):
        raise ValueError("head.retrieval_weight > 0 needs one retrieval vote per validation row")
    if (
        dev_rows
        and (weight > 0 or config.head.weight_from_dev)
        and (dev_votes is None or len(dev_votes) != len(dev_rows))
    ):
        raise ValueError("a dev split with a retrieval weight needs one retrieval vote per dev row")
    if config.head.weight_from_dev and not dev_rows:
        raise ValueError("head.weight_from_dev needs dev rows")
    if config.head.query_embedding != (queries is not None):
        raise ValueError("head.query_embedding needs query vectors for the rows, and query vectors need it")
    if queries is not None and (
        len(queries.train) != len(train_rows)
        or len(queries.validation) != len(val_rows)
        or (dev_rows and (queries.dev is None or len(queries.dev) != len(dev_rows)))
    ):
        raise ValueError("query vectors must match the training, validation and dev rows one to one")
    if encoder_probs is not None and (
        len(encoder_probs.validation) != len(val_rows)
        or (dev_rows and (encoder_probs.dev is None or len(encoder_probs.dev) != len(dev_rows)))
    ):
        raise ValueError("encoder probabilities must match the validation and dev rows one to one")
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from tqdm.auto import tqdm

    torch.manual_seed(config.optim.seed)
    rng = random.Random(config.optim.seed)
    index = {label: i for i, label in enumerate(labels)}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prefix = config.head.exit_layer - config.lora.layers

    t0 = time.perf_counter()
    train_ids = encoder.tokenize(tokenizer, [t for t, _ in train_rows], config.data.max_length)
    val_ids = encoder.tokenize(tokenizer, [t for t, _ in val_rows], config.data.max_length)
    dev_ids = (
        encoder.tokenize(tokenizer, [t for t, _ in dev_rows], config.data.max_length) if dev_rows else []
    )
    with tqdm(
        total=len(train_ids) + len(val_ids) + len(dev_ids),
        desc=f"cache layers 0-{prefix - 1}",
        unit="row",
        disable=not progress,
    ) as bar:
        model.eval()
        train_states = cache_states(model, train_ids, prefix, pad_id, device, on_batch=bar.update)
        val_states = cache_states(model, val_ids, prefix, pad_id, device, on_batch=bar.update)
        dev_states = (
            cache_states(model, dev_ids, prefix, pad_id, device, on_batch=bar.update) if dev_ids else []
        )
    cache_seconds = time.perf_counter() - t0
    y_train = torch.tensor([index[c] for _, c in train_rows], device=device)
    gold_val = [c for _, c in val_rows]
    gold_dev = [c for _, c in dev_rows]

    def served_on(
        probs: np.ndarray,
        votes: Sequence[dict[str, float]] | None,
        w: float,
        fine_tuned: np.ndarray | None = None,
    ) -> list[str]:
        if fine_tuned is not None and encoder_probs is not None:
            probs = blend(probs, fine_tuned, w, encoder_probs.weight)
        return (
            mixed_predictions(probs, labels, votes or [], w)
            if w > 0
            else mixed_predictions(probs, labels, [], 0.0)
        )

    enc_val = encoder_probs.validation if encoder_probs else None
    enc_dev = encoder_probs.dev if encoder_probs else None

    q_train = torch.from_numpy(queries.train).to(device) if queries else None
    q_val = queries.validation if queries else None
    q_dev = queries.dev if queries else None
    head = IntentHead(
        _features(model, config) + (queries.dim if queries else 0),
        len(labels),
        config.head.dropout,
        query_scale=config.head.query_scale,
    ).to(device)
    lora_params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": lora_params, "lr": config.optim.lr},
            {"params": head.parameters(), "lr": config.optim.head_lr},
        ],
        weight_decay=config.optim.weight_decay,
    )
    steps_per_epoch = math.ceil(len(train_states) / config.optim.batch_size)
    total = steps_per_epoch * config.optim.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, schedule(total, int(total * config.optim.warmup_ratio))
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.optim.label_smoothing)
    lengths = [s.shape[0] for s in train_states]

    reports: list[EpochReport] = []
    best_acc: tuple[float, float] = (-1.0, -1.0)
    best_epoch, stale = 0, 0
    best_state: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None
    best_probs = np.zeros((0, len(labels)), dtype=np.float32)
    best_dev_probs = np.zeros((0, len(labels)), dtype=np.float32)
    for epoch in range(1, config.optim.epochs + 1):
        model.train()
        head.train()
        started, losses = time.perf_counter(), []
        batches = length_batches(lengths, config.optim.batch_size, rng)
        with tqdm(
            total=len(train_states),
            desc=f"epoch {epoch}/{config.optim.epochs}",
            unit="row",
            disable=not progress,
        ) as bar:
            for batch in batches:
                logits = _logits(
                    model,
                    head,
                    [train_states[i] for i in batch],
                    config,
                    q_train[batch] if q_train is not None else None,
                )
                loss = loss_fn(logits.float(), y_train[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(lora_params + list(head.parameters()), 1.0)
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                bar.update(len(batch))
                bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
        seconds = time.perf_counter() - started
        probs = probabilities(model, head, val_states, config, queries=q_val)
        served = served_on(probs, val_votes, weight, enc_val)
        dev_probs = probabilities(model, head, dev_states, config, queries=q_dev) if dev_states else None
        report = EpochReport(
            epoch=epoch,
            train_loss=sum(losses) / len(losses),
            accuracy=metrics.accuracy(gold_val, served),
            macro_f1=metrics.macro_f1(gold_val, served),
            head_accuracy=metrics.accuracy(gold_val, served_on(probs, None, 0.0)),
            dev_accuracy=metrics.accuracy(gold_dev, served_on(dev_probs, dev_votes, weight, enc_dev))
            if dev_states
            else None,
            dev_head_accuracy=metrics.accuracy(gold_dev, served_on(dev_probs, None, 0.0))
            if dev_states
            else None,
            seconds=seconds,
            rows_per_s=len(train_states) / seconds,
        )
        reports.append(report)
        log.info(
            "epoch %d: loss %.4f, validation accuracy %.4f (head alone %.4f), macro-F1 %.4f, dev accuracy %s "
            "(head alone %s), %.0f s",
            epoch,
            report.train_loss,
            report.accuracy,
            report.head_accuracy,
            report.macro_f1,
            report.dev_accuracy,
            report.dev_head_accuracy,
            seconds,
        )
        # Served accuracy picks the epoch; a tie goes to the better head (1.2.0 kept epoch 3 over an
        # equally served epoch 4 whose head was a point better).
        if report.dev_accuracy is not None:
            score = (report.dev_accuracy, report.dev_head_accuracy or 0.0)
        else:
            score = (report.accuracy, report.head_accuracy)
        if score > best_acc:
            best_acc, best_epoch, stale, best_probs = score, epoch, 0, probs
            best_dev_probs = dev_probs if dev_probs is not None else best_dev_probs
            best_state = (
                {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()},
                copy.deepcopy(head.state_dict()),
            )
        else:
            stale += 1
            if stale >= config.optim.patience:
                log.info("no better validation accuracy for %d epoch(s): stopping", stale)
                break
    if best_state is None:
        raise RuntimeError("training produced no epoch")
    if best_epoch != len(reports):
        set_peft_model_state_dict(model, best_state[0])
        head.load_state_dict(best_state[1])
    model.eval()
    head.eval()
    # How the served accuracy depends on the mix weight. On validation: recorded for the next config,
    # never used to pick this one's weight. On the dev split: picks it when head.weight_from_dev.
    # With an encoder its share stays fixed; the grid stops where the LLM head's share would go negative.
    grid = [w for w in WEIGHT_GRID if w + (encoder_probs.weight if encoder_probs else 0.0) <= 1.0 + 1e-9]
    sweep = {}
    if val_votes:
        for w in grid:
            sweep[f"{w:.1f}"] = metrics.accuracy(gold_val, served_on(best_probs, val_votes, w, enc_val))
    dev_sweep = None
    if dev_states and dev_votes:
        dev_sweep = {
            f"{w:.1f}": metrics.accuracy(gold_dev, served_on(best_dev_probs, dev_votes, w, enc_dev))
            for w in grid
        }
    best = reports[best_epoch - 1]
    if config.head.weight_from_dev and dev_sweep:
        # Highest dev accuracy; ties go to the weight closest to the configured one.
        weight = max(grid, key=lambda w: (dev_sweep[f"{w:.1f}"], -abs(w - config.head.retrieval_weight)))
        served = served_on(best_probs, val_votes, weight, enc_val)
        best = best.model_copy(
            update={
                "accuracy": metrics.accuracy(gold_val, served),
                "macro_f1": metrics.macro_f1(gold_val, served),
                "dev_accuracy": dev_sweep[f"{weight:.1f}"],
            }
        )
        log.info(
            "mix weight %.1f chosen on the dev split (dev accuracy %.4f): validation accuracy %.4f",
            weight,
            dev_sweep[f"{weight:.1f}"],
            best.accuracy,
        )
    return Trained(
        model=model,
        head=head,
        labels=labels,
        epochs=reports,
        best_epoch=best_epoch,
        cache_seconds=cache_seconds,
        weight_sweep=sweep,
        retrieval_weight=weight,
        best=best,
        dev_weight_sweep=dev_sweep,
        queries=queries,
    )


WEIGHT_GRID = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0)


def _features(model: Any, config: TrainConfig) -> int:
    hidden = encoder.decoder(model).config.hidden_size
    return hidden * (2 if config.head.pooling == "mean_last" else 1)
