"""One training job end to end: config -> split -> LoRA + head -> registry version."""

from __future__ import annotations

import logging
import platform
import time
from pathlib import Path

from pydantic import Field

from finserve.contracts import AdapterManifest, AdapterRegistry, StrictModel
from finserve.serving.paths import banking77_csv

from .config import TrainConfig
from .data import load_splits
from .model import load_base
from .package import publish
from .trainer import EpochReport, fit
from .votes import neighbour_votes

log = logging.getLogger(__name__)


class JobResult(StrictModel):
    """What ``finserve train`` reports."""

    manifest: AdapterManifest = Field(description="The published version's manifest.")
    epochs: list[EpochReport] = Field(description="Every epoch run, including those after the best one.")
    best_epoch: int = Field(description="The epoch whose weights were published.")
    minutes: float = Field(description="Wall time of the whole job, model load to publish.")
    train_rows: int = Field(description="Training rows used.")
    validation_rows: int = Field(description="Validation rows used.")


def run_job(
    config: TrainConfig,
    registry: AdapterRegistry,
    base_model_path: Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> JobResult:
    import torch

    started = time.perf_counter()
    if registry.versions(config.name).count(config.version) and not overwrite:
        raise FileExistsError(f"adapter {config.ref} already exists in {registry.root}; bump the version")
    if config.threads:
        torch.set_num_threads(config.threads)
    splits = load_splits(
        config.data.csv or banking77_csv(),
        max_train_per_intent=config.data.max_train_per_intent,
        max_validation_per_intent=config.data.max_validation_per_intent,
        seed=config.data.seed,
    )
    log.info("%d training rows, %d validation rows, %d intents from %s",
             len(splits.train), len(splits.validation), len(splits.labels), splits.source)
    votes = None
    if config.head.retrieval_weight > 0:
        log.info("retrieval votes for %d validation rows over %d indexed rows", len(splits.validation),
                 len(splits.index_rows))
        votes = neighbour_votes(splits.index_rows, [t for t, _ in splits.validation], config.head.vote_k,
                                config.head.vote_temperature)
    path = base_model_path or _base_path(config)
    base = load_base(config, path)
    trained = fit(config, base.model, base.tokenizer, base.device, splits.train, splits.validation, splits.labels,
                  val_votes=votes, progress=progress)
    hidden = base.model.get_base_model().config.hidden_size
    minutes = (time.perf_counter() - started) / 60
    facts = {
        "train_rows": len(splits.train),
        "validation_rows": len(splits.validation),
        "split": "finserve.serving.retrieval.kb.default_split (80/20, stratified, seed 77)",
        "epochs_run": len(trained.epochs),
        "best_epoch": trained.best_epoch,
        "epochs": [e.model_dump() for e in trained.epochs],
        "cache_seconds": round(trained.cache_seconds, 1),
        "retrieval_weight_sweep": trained.weight_sweep,
        "minutes": round(minutes, 2),
        "device": base.device,
        "quantization": "nf4" if base.quantized else "none",
        "torch_threads": torch.get_num_threads(),
        "host": platform.machine(),
    }
    manifest = publish(registry, config, trained, hidden, splits.checksum, facts, overwrite=overwrite)
    log.info("published %s to %s", manifest.ref, registry.root)
    return JobResult(manifest=manifest, epochs=trained.epochs, best_epoch=trained.best_epoch, minutes=minutes,
                     train_rows=len(splits.train), validation_rows=len(splits.validation))


def _base_path(config: TrainConfig) -> Path:
    if config.base_model_path:
        return Path(config.base_model_path)
    from finserve.serving.inference.base_model import ensure_base_model

    return ensure_base_model()
