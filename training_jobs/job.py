"""One training job end to end: config -> split -> LoRA + head -> registry version."""

from __future__ import annotations

import logging
import platform
import time
from pathlib import Path

from pydantic import Field

from finserve.contracts import AdapterManifest, AdapterRef, AdapterRegistry, StrictModel
from finserve.serving.paths import banking77_csv

from .answer_trainer import AnswerEpoch, build_examples, fit_answers
from .config import TrainConfig
from .data import Splits, load_splits, per_intent_subset
from .encoder_trainer import EncoderEpoch, TrainedEncoder, fit_encoder
from .model import load_base, load_generator, resolve_device
from .package import Answers, publish, publish_answers_on
from .trainer import EncoderProbs, EpochReport, QueryVectors, fit
from .votes import NeighbourIndex

log = logging.getLogger(__name__)


class JobResult(StrictModel):
    """What ``finserve train`` reports."""

    manifest: AdapterManifest = Field(description="The published version's manifest.")
    epochs: list[EpochReport] = Field(
        default_factory=list,
        description="Every intent epoch run, including those after the best one (none with intent_from).",
    )
    best_epoch: int = Field(
        0, description="The intent epoch whose weights were published (0: taken from intent_from)."
    )
    encoder_epochs: list[EncoderEpoch] = Field(
        default_factory=list, description="The fine-tuned encoder's epochs (empty without encoder.enabled)."
    )
    answer_epochs: list[AnswerEpoch] = Field(
        default_factory=list,
        description="The generator's answer-tuning epochs (empty without answers.enabled).",
    )
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
    log.info(
        "%d training rows, %d dev rows, %d validation rows, %d intents from %s",
        len(splits.train),
        len(splits.dev),
        len(splits.validation),
        len(splits.labels),
        splits.source,
    )
    if config.intent_from:
        return _answers_on_existing(
            config, registry, splits, base_model_path or _base_path(config), progress, overwrite, started
        )
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
            if (
                splits.dev
            ):  # dev rows are in the index: each leaves itself out, as an unseen query would find it missing
                dev_votes = index.votes(
                    None, config.head.vote_k, config.head.vote_temperature, exclude=splits.dev_index
                )
        if config.head.query_embedding:
            queries = QueryVectors(
                embedder=index.embedder_id,
                train=index.vectors_of([t for t, _ in splits.train]),
                validation=val_vectors,
                dev=index.vectors_of([t for t, _ in splits.dev]) if splits.dev else None,
            )
    fine_tuned: TrainedEncoder | None = None
    if config.encoder.enabled:  # first: the LLM's epochs are scored on the mix that includes it
        from finserve.serving.retrieval.embedder import default_model_path

        fine_tuned = fit_encoder(
            config.encoder,
            default_model_path(),
            splits.train,
            splits.validation,
            splits.labels,
            dev_rows=splits.dev,
            seed=config.optim.seed,
            progress=progress,
            device=resolve_device(config.device),
        )
    path = base_model_path or _base_path(config)
    base = load_base(config, path)
    trained = fit(
        config,
        base.model,
        base.tokenizer,
        base.device,
        splits.train,
        splits.validation,
        splits.labels,
        val_votes=votes,
        progress=progress,
        dev_rows=splits.dev,
        dev_votes=dev_votes,
        queries=queries,
        encoder_probs=EncoderProbs(config.encoder.weight, fine_tuned.validation, fine_tuned.dev)
        if fine_tuned
        else None,
    )
    hidden = base.model.get_base_model().config.hidden_size
    answers = _tune_answers(config, path, splits, progress) if config.answers.enabled else None
    minutes = (time.perf_counter() - started) / 60
    facts = {
        "train_rows": len(splits.train),
        "validation_rows": len(splits.validation),
        "dev_rows": len(splits.dev),
        "split": "finserve.serving.retrieval.kb.default_split (80/20, stratified, seed 77)"
        + (
            f"; dev: {config.data.dev_per_intent} training rows per intent (seed {config.data.seed + 1}) pick the "
            "epoch and mix weight, validation is only reported"
            if splits.dev
            else ""
        ),
        "epochs_run": len(trained.epochs),
        "best_epoch": trained.best_epoch,
        "epochs": [e.model_dump() for e in trained.epochs],
        "cache_seconds": round(trained.cache_seconds, 1),
        **(
            {
                "encoder": {
                    "epochs": [e.model_dump() for e in fine_tuned.epochs],
                    "accuracy": fine_tuned.epochs[-1].accuracy,
                    "cache_seconds": round(fine_tuned.cache_seconds, 1),
                    "trained_layers": fine_tuned.spec.trained_layers,
                    "base": fine_tuned.spec.base,
                }
            }
            if fine_tuned
            else {}
        ),
        **({"answers": _answer_facts(answers)} if answers else {}),
        "retrieval_weight_sweep": trained.weight_sweep,
        "retrieval_weight": trained.retrieval_weight,
        **({"dev_retrieval_weight_sweep": trained.dev_weight_sweep} if trained.dev_weight_sweep else {}),
        "minutes": round(minutes, 2),
        "device": base.device,
        "quantization": "nf4" if base.quantized else "none",
        "torch_threads": torch.get_num_threads(),
        "host": platform.machine(),
    }
    manifest = publish(
        registry,
        config,
        trained,
        hidden,
        splits.checksum,
        facts,
        overwrite=overwrite,
        encoder=fine_tuned,
        answers=answers,
    )
    log.info("published %s to %s", manifest.ref, registry.root)
    return JobResult(
        manifest=manifest,
        epochs=trained.epochs,
        best_epoch=trained.best_epoch,
        minutes=minutes,
        encoder_epochs=fine_tuned.epochs if fine_tuned else [],
        answer_epochs=answers.report.epochs if answers else [],
        train_rows=len(splits.train),
        validation_rows=len(splits.validation),
    )


def _tune_answers(config: TrainConfig, base_path: Path, splits: Splits, progress: bool) -> Answers:
    """The generator's answer LoRA, tuned on prompts the in-process serving pipeline builds (its retrieval
    index is built first if the data dir has none)."""
    from finserve.serving.config import ServingConfig
    from finserve.serving.local import build_local_stack
    from finserve.serving.retrieval.ingest import index_exists, ingest
    from finserve.serving.retrieval.kb import load_answers

    path = config.answers.serving_config
    serving = ServingConfig.from_file(path) if path else ServingConfig()
    if not index_exists(serving.retrieval):
        ingest(serving.retrieval, progress=progress)
    stack = build_local_stack(serving, with_generator=False)
    rows = per_intent_subset(splits.train, config.answers.per_intent, config.answers.seed)
    taken = set(rows)
    dev_rows = (
        per_intent_subset(
            [r for r in splits.train if r not in taken],
            config.answers.dev_per_intent,
            config.answers.seed + 1,
        )
        if config.answers.dev_per_intent
        else []
    )
    generator = load_generator(config, base_path)
    answers = load_answers()
    examples = build_examples(stack.pipeline, generator.tokenizer, rows, answers)
    dev = build_examples(stack.pipeline, generator.tokenizer, dev_rows, answers) if dev_rows else []
    stack.retriever.close()
    report = fit_answers(
        config.answers,
        generator.model,
        generator.tokenizer,
        generator.device,
        examples,
        dev,
        seed=config.answers.seed,
        progress=progress,
    )
    return Answers(model=generator.model, report=report)


def _answer_facts(answers: Answers) -> dict:
    r = answers.report
    return {
        "examples": r.examples,
        "dev_examples": r.dev_examples,
        "base_dev_loss": r.base_dev_loss,
        "epochs": [e.model_dump() for e in r.epochs],
        "cache_seconds": round(r.cache_seconds, 1),
        "prompt_tokens_mean": round(r.prompt_tokens_mean, 1),
        "target_tokens_mean": round(r.target_tokens_mean, 1),
        "compute_dtype": r.compute_dtype,
        "targets": "the curated answer of each row's intent (serving/retrieval/data/answers.yaml)",
        "prompts": "serving's guard, retrieval, context guard and prompt builder, the intent's knowledge first",
    }


def _answers_on_existing(
    config: TrainConfig,
    registry: AdapterRegistry,
    splits: Splits,
    base_path: Path,
    progress: bool,
    overwrite: bool,
    started: float,
) -> JobResult:
    """intent_from: tune only the answer LoRA and publish it over the source version's intent parts."""
    import torch

    source, source_folder = registry.fetch(AdapterRef.parse(config.intent_from or ""))
    answers = _tune_answers(config, base_path, splits, progress)
    minutes = (time.perf_counter() - started) / 60
    facts = {
        "answers": _answer_facts(answers),
        "minutes": round(minutes, 2),
        "device": resolve_device(config.device),
        "torch_threads": torch.get_num_threads(),
        "host": platform.machine(),
    }
    manifest = publish_answers_on(
        registry, config, source, source_folder, answers, facts, overwrite=overwrite
    )
    log.info("published %s (intent parts of %s) to %s", manifest.ref, source.ref, registry.root)
    return JobResult(
        manifest=manifest,
        minutes=minutes,
        answer_epochs=answers.report.epochs,
        train_rows=answers.report.examples,
        validation_rows=len(splits.validation),
    )


def _base_path(config: TrainConfig) -> Path:
    if config.base_model_path:
        return Path(config.base_model_path)
    from finserve.serving.inference.base_model import ensure_base_model

    return ensure_base_model()
