"""Fine-tuning the sentence encoder that an adapter version carries beside its LoRA (see
``finserve.serving.intent.sentence_encoder``).

The embeddings and the layers below the trained ones are frozen, so their output is computed once
per row and cached, as the LLM prefix is in trainer.py; each step runs only the trained layers,
mean pooling and the head, on batches of similar length (little padding). The schedule is fixed
(warm-up, linear decay to zero over ``encoder.epochs``) and the last epoch is kept: the LLM part
picks its epoch on the served mix, which already contains these probabilities.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from finserve.contracts import StrictModel
from finserve.serving.intent.sentence_encoder import EncoderClassifier, EncoderSpec, load_base_encoder
from finserve.serving.retrieval.embedder import model_fingerprint

from . import metrics
from .config import EncoderSettings
from .trainer import length_batches, schedule

log = logging.getLogger(__name__)


class EncoderEpoch(StrictModel):
    """What one encoder epoch did."""

    epoch: int = Field(description="1-based epoch number.")
    train_loss: float = Field(description="Mean training loss over the epoch's steps.")
    accuracy: float = Field(description="Validation accuracy of the encoder's head alone.")
    seconds: float = Field(description="Wall time of the epoch's training steps.")
    rows_per_s: float = Field(description="Training rows per second in the epoch.")


@dataclass
class TrainedEncoder:
    model: EncoderClassifier
    spec: EncoderSpec
    epochs: list[EncoderEpoch]
    validation: np.ndarray  # (rows, labels) probabilities of the final weights
    dev: np.ndarray | None
    cache_seconds: float


def fit_encoder(
    settings: EncoderSettings,
    base_path: Path,
    train_rows: Sequence[tuple[str, str]],
    val_rows: Sequence[tuple[str, str]],
    labels: list[str],
    dev_rows: Sequence[tuple[str, str]] = (),
    seed: int = 77,
    progress: bool = True,
    device: str = "cpu",
) -> TrainedEncoder:
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = load_base_encoder(base_path, len(labels), settings.max_length, settings.dropout).to(device)
    n_layers = len(model.layers)
    if settings.train_layers > n_layers:
        raise ValueError(
            f"encoder.train_layers ({settings.train_layers}) exceeds the encoder's {n_layers} layers"
        )
    first = n_layers - settings.train_layers
    for name, param in model.bert.named_parameters():
        param.requires_grad_(any(name.startswith(f"encoder.layer.{i}.") for i in range(first, n_layers)))
    index = {label: i for i, label in enumerate(labels)}

    started = time.perf_counter()
    model.eval()
    with (
        torch.no_grad(),
        tqdm(
            total=len(train_rows) + len(val_rows) + len(dev_rows),
            unit="row",
            desc=f"encoder: cache below layer {first}",
            disable=not progress,
        ) as bar,
    ):

        def cached(rows: Sequence[tuple[str, str]]) -> list[torch.Tensor]:
            texts = [t for t, _ in rows]
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            out: list[torch.Tensor] = [torch.empty(0)] * len(texts)
            for start in range(0, len(order), 256):
                chunk = order[start : start + 256]
                for i, state in zip(chunk, model.prefix([texts[i] for i in chunk], first), strict=True):
                    out[i] = state.clone()
                bar.update(len(chunk))
            return out

        train_states, val_states, dev_states = cached(train_rows), cached(val_rows), cached(dev_rows)
    cache_seconds = time.perf_counter() - started
    y = torch.tensor([index[c] for _, c in train_rows], device=device)
    gold = [c for _, c in val_rows]

    trained = [p for p in model.bert.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": trained, "lr": settings.lr}, {"params": model.head.parameters(), "lr": settings.head_lr}],
        weight_decay=0.01,
    )
    total = settings.epochs * math.ceil(len(train_states) / settings.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(total, max(1, int(total * 0.06))))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    lengths = [s.shape[0] for s in train_states]
    reports: list[EncoderEpoch] = []
    val_probs = np.zeros((len(val_rows), len(labels)), dtype=np.float32)
    for epoch in range(1, settings.epochs + 1):
        model.train()
        t0, losses = time.perf_counter(), []
        with tqdm(
            total=len(train_states),
            desc=f"encoder epoch {epoch}/{settings.epochs}",
            unit="row",
            disable=not progress,
        ) as bar:
            for batch in length_batches(lengths, settings.batch_size, rng):
                loss = loss_fn(model.logits_from([train_states[i] for i in batch], first), y[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                bar.update(len(batch))
                bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
        seconds = time.perf_counter() - t0
        val_probs = probabilities(model, val_states, first)
        report = EncoderEpoch(
            epoch=epoch,
            train_loss=sum(losses) / len(losses),
            accuracy=metrics.accuracy(gold, [labels[i] for i in val_probs.argmax(axis=1)]),
            seconds=seconds,
            rows_per_s=len(train_states) / seconds,
        )
        reports.append(report)
        log.info(
            "encoder epoch %d: loss %.4f, validation accuracy %.4f (encoder alone), %.0f s",
            epoch,
            report.train_loss,
            report.accuracy,
            seconds,
        )
    model.eval()
    spec = EncoderSpec(
        base=model_fingerprint(base_path),
        layers=n_layers,
        trained_layers=list(range(first, n_layers)),
        max_length=settings.max_length,
        weight=settings.weight,
    )
    return TrainedEncoder(
        model=model,
        spec=spec,
        epochs=reports,
        validation=val_probs,
        dev=probabilities(model, dev_states, first) if dev_states else None,
        cache_seconds=cache_seconds,
    )


def probabilities(
    model: EncoderClassifier, states: Sequence[torch.Tensor], first: int, batch_size: int = 128
) -> np.ndarray:
    """Probabilities from cached prefix states (rows in input order)."""
    model.eval()
    order = sorted(range(len(states)), key=lambda i: states[i].shape[0])
    out = np.zeros((len(states), model.head.out_features), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = (
                torch.softmax(model.logits_from([states[i] for i in chunk], first), dim=-1).cpu().numpy()
            )
    return out
