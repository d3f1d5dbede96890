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
from .encoder_trainer import EncoderEpoch, TrainedEncoder, fit_encoder
from .model import load_base, resolve_device
from .package import publish
from .trainer import EncoderProbs, EpochReport, QueryVectors, fit
from .votes import NeighbourIndex

log = logging.getLogger(__name__)


class JobResult(StrictModel):
    """What ``finserve train`` reports."""

    manifest: AdapterManifest = Field(description="The published version's manifest.")
    epochs: list[EpochReport] = Field(description="Every epoch run, including those after the best one.")
    best_epoch: int = Field(description="The epoch whose weights were published.")
    encoder_epochs: list[EncoderEpoch] = Field(
        default_factory=list, description="The fine-tuned encoder's epochs (empty without encoder.enabled).")
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
        dev_per_intent=config.data.dev_per_intent,
    )
    log.info("%d training rows, %d dev rows, %d validation rows, %d intents from %s",
             len(splits.train), len(splits.dev), len(splits.validation), len(splits.labels), splits.source)
    votes = dev_votes = queries = None
    wants_votes = config.head.retrieval_weight > 0 or config.head.weight_from_dev
    if wants_votes or config.head.query_embedding:
        # Votes need the whole index; query vectors alone need only the rows trained and scored on.
        indexed = splits.index_rows if wants_votes else list(splits.train) + list(splits.dev)
        log.info("embedding %d indexed rows and %d validation rows", len(indexed), len(splits.validation))
        index = NeighbourIndex(indexed)
        val_vectors = index.embed([t for t, _ in splits.validation])
        if wants_votes:
            votes = index.votes(None, config.head.vote_k, config.head.vote_temperature, vectors=val_vectors)
            if splits.dev:  # dev rows are in the index: each leaves itself out, as an unseen query would find it missing
                dev_votes = index.votes(None, config.head.vote_k, config.head.vote_temperature,
                                        exclude=splits.dev_index)
        if config.head.query_embedding:
            queries = QueryVectors(
                embedder=index.embedder_id, train=index.vectors_of([t for t, _ in splits.train]),
                validation=val_vectors, dev=index.vectors_of([t for t, _ in splits.dev]) if splits.dev else None,
            )
    fine_tuned: TrainedEncoder | None = None
    if config.encoder.enabled:  # first: the LLM's epochs are scored on the mix that includes it
        from finserve.serving.retrieval.embedder import default_model_path

        fine_tuned = fit_encoder(config.encoder, default_model_path(), splits.train, splits.validation, splits.labels,
                                 dev_rows=splits.dev, seed=config.optim.seed, progress=progress,
                                 device=resolve_device(config.device))
    path = base_model_path or _base_path(config)
    base = load_base(config, path)
    trained = fit(config, base.model, base.tokenizer, base.device, splits.train, splits.validation, splits.labels,
                  val_votes=votes, progress=progress, dev_rows=splits.dev, dev_votes=dev_votes, queries=queries,
                  encoder_probs=EncoderProbs(config.encoder.weight, fine_tuned.validation, fine_tuned.dev)
                  if fine_tuned else None)
    hidden = base.model.get_base_model().config.hidden_size
    minutes = (time.perf_counter() - started) / 60
    facts = {
        "train_rows": len(splits.train),
        "validation_rows": len(splits.validation),
        "dev_rows": len(splits.dev),
        "split": "finserve.serving.retrieval.kb.default_split (80/20, stratified, seed 77)"
        + (f"; dev: {config.data.dev_per_intent} training rows per intent (seed {config.data.seed + 1}) pick the "
           "epoch and mix weight, validation is only reported" if splits.dev else ""),
        "epochs_run": len(trained.epochs),
        "best_epoch": trained.best_epoch,
        "epochs": [e.model_dump() for e in trained.epochs],
        "cache_seconds": round(trained.cache_seconds, 1),
        **({"encoder": {"epochs": [e.model_dump() for e in fine_tuned.epochs], "accuracy": fine_tuned.epochs[-1].accuracy,
                        "cache_seconds": round(fine_tuned.cache_seconds, 1), "trained_layers": fine_tuned.spec.trained_layers,
                        "base": fine_tuned.spec.base}} if fine_tuned else {}),
        "retrieval_weight_sweep": trained.weight_sweep,
        "retrieval_weight": trained.retrieval_weight,
        **({"dev_retrieval_weight_sweep": trained.dev_weight_sweep} if trained.dev_weight_sweep else {}),
        "minutes": round(minutes, 2),
        "device": base.device,
        "quantization": "nf4" if base.quantized else "none",
        "torch_threads": torch.get_num_threads(),
        "host": platform.machine(),
    }
    manifest = publish(registry, config, trained, hidden, splits.checksum, facts, overwrite=overwrite, encoder=fine_tuned)
    log.info("published %s to %s", manifest.ref, registry.root)
    return JobResult(manifest=manifest, epochs=trained.epochs, best_epoch=trained.best_epoch, minutes=minutes,
                     encoder_epochs=fine_tuned.epochs if fine_tuned else [],
                     train_rows=len(splits.train), validation_rows=len(splits.validation))


def _base_path(config: TrainConfig) -> Path:
    if config.base_model_path:
        return Path(config.base_model_path)
    from finserve.serving.inference.base_model import ensure_base_model

    return ensure_base_model()
