"""Turning trained weights into a registry version: PEFT folder + intent head + model card + manifest."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finserve.contracts import AdapterManifest, AdapterRegistry
from finserve.serving.inference.base_model import BASE_MODEL_ID, gguf_path
from finserve.serving.inference.lora_gguf import GGUF_LORA_FILE, base_shape, convert_peft_to_gguf
from finserve.serving.intent.head import (
    HEAD_SPEC,
    HEAD_WEIGHTS,
    INTENT_LORA_DIR,
    LABELS,
    HeadSpec,
    QueryEmbedding,
    intent_lora_folder,
    save_head,
)
from finserve.serving.intent.sentence_encoder import ENCODER_SPEC, ENCODER_WEIGHTS, save_encoder

from .answer_trainer import TrainedAnswers
from .config import TrainConfig
from .data import DATA_ATTRIBUTION
from .encoder_trainer import TrainedEncoder
from .trainer import Trained

ADAPTER_CONFIG = "adapter_config.json"
PEFT_FILES = (ADAPTER_CONFIG, "adapter_model.safetensors")


def save_lora(folder: Path, model: Any) -> None:
    """A PeftModel's LoRA as a plain PEFT folder (loadable by vLLM and transformers+PEFT)."""
    model.save_pretrained(str(folder))
    # PEFT records the local folder it loaded from; the registry promises the hub id of the base.
    cfg_path = folder / ADAPTER_CONFIG
    adapter_cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    adapter_cfg["base_model_name_or_path"] = BASE_MODEL_ID
    # PEFT writes target_modules from a set, in hash order: sorted, the same training run gives the
    # same bytes and so the same registry checksum.
    if isinstance(adapter_cfg.get("target_modules"), list):
        adapter_cfg["target_modules"] = sorted(adapter_cfg["target_modules"])
    cfg_path.write_text(json.dumps(adapter_cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_gguf_lora(folder: Path) -> None:
    """The top-level PEFT LoRA again as a GGUF LoRA (``adapter.gguf``) for the llama.cpp engine, so one registry
    version serves every engine and the GGUF is under the version's checksum like the PEFT files."""
    convert_peft_to_gguf(folder, folder / GGUF_LORA_FILE, base_shape(gguf_path()))


def write_adapter_folder(
    folder: Path,
    config: TrainConfig,
    trained: Trained,
    hidden_size: int,
    encoder: TrainedEncoder | None = None,
    answers: Answers | None = None,
) -> None:
    """The PEFT LoRA files, the intent head and the fine-tuned encoder (if trained) beside them. With an answer
    LoRA, that one is the top-level adapter (what the generator loads) and the head's LoRA goes to intent_lora/."""
    if answers is not None:
        save_lora(folder, answers.model)
        save_lora(folder / INTENT_LORA_DIR, trained.model)
    else:
        save_lora(folder, trained.model)
    save_gguf_lora(folder)
    spec = HeadSpec(
        base_model=BASE_MODEL_ID,
        hidden_size=hidden_size,
        exit_layer=config.head.exit_layer,
        lora_layers=config.lora_layer_ids,
        pooling=config.head.pooling,
        max_length=config.data.max_length,
        retrieval_weight=trained.retrieval_weight,
        vote_temperature=config.head.vote_temperature,
        query_embedding=QueryEmbedding(
            embedder=trained.queries.embedder, dim=trained.queries.dim, scale=config.head.query_scale
        )
        if trained.queries
        else None,
    )
    save_head(folder, spec, trained.head, trained.labels)
    if encoder is not None:
        save_encoder(folder, encoder.spec, encoder.model)
    (folder / "README.md").write_text(
        model_card(config, trained, encoder) + answers_card(config, answers), encoding="utf-8"
    )


@dataclass
class Answers:
    """The generator's answer LoRA (a PeftModel over the whole base model) and how its tuning went."""

    model: Any
    report: TrainedAnswers


def answers_card(config: TrainConfig, answers: Answers | None) -> str:
    if answers is None:
        return ""
    last = answers.report.epochs[-1]
    layers = f"{config.answers.first_layer}-{answers.model.get_base_model().config.num_hidden_layers - 1}"
    return (
        f"\n## Answers\n\nThe top-level LoRA (layers {layers}) is tuned for the bank's answers: supervised "
        f"fine-tuning on {answers.report.examples} prompts built by serving's own guard, retrieval and prompt "
        f"builder, with the curated answer of each row's intent as the target ({config.answers.epochs} epochs, "
        f"last train loss {last.train_loss:.3f}"
        + (f", dev loss {last.dev_loss:.3f}" if last.dev_loss is not None else "")
        + "). It is what the generator serves; the intent head's LoRA is in `intent_lora/`.\n"
    )


def publish_answers_on(
    registry: AdapterRegistry,
    config: TrainConfig,
    source: AdapterManifest,
    source_folder: Path,
    answers: Answers,
    training_facts: dict[str, Any],
    overwrite: bool = False,
) -> AdapterManifest:
    """A new version from ``source``'s intent parts (its head, encoder and the head's LoRA, byte for byte) and
    a freshly tuned answer LoRA. The intent figures carry over: the served intent reads only those parts."""
    with tempfile.TemporaryDirectory(prefix="finserve-adapter-") as tmp:
        folder = Path(tmp)
        save_lora(folder, answers.model)
        save_gguf_lora(folder)
        intent_lora = intent_lora_folder(source_folder)
        (folder / INTENT_LORA_DIR).mkdir()
        for name in PEFT_FILES:
            shutil.copyfile(intent_lora / name, folder / INTENT_LORA_DIR / name)
        for name in (HEAD_SPEC, HEAD_WEIGHTS, LABELS, ENCODER_SPEC, ENCODER_WEIGHTS):
            if (source_folder / name).is_file():
                shutil.copyfile(source_folder / name, folder / name)
        (folder / "README.md").write_text(
            f"# {config.name} {config.version}\n\nThe intent parts (head, encoder, the head's LoRA in `intent_lora/`) "
            f"are those of {source.ref} unchanged (checksum {source.checksum[:12]}); see its model card.\n"
            + answers_card(config, answers)
            + f"\nTraining data: {DATA_ATTRIBUTION}.\n",
            encoding="utf-8",
        )
        manifest = AdapterManifest(
            name=config.name,
            version=config.version,
            base_model=BASE_MODEL_ID,
            checksum="",
            training={
                "config": config.model_dump(mode="json"),
                "intent_from": {
                    "ref": str(source.ref),
                    "checksum": source.checksum,
                    "training": source.training,
                },
                **training_facts,
            },
            data_checksum=source.data_checksum,
            metrics=dict(source.metrics),
            description=(config.description + " " if config.description else "")
            + f"Training data: {DATA_ATTRIBUTION}.",
        )
        return registry.publish(folder, manifest, overwrite=overwrite)


def model_card(config: TrainConfig, trained: Trained, encoder: TrainedEncoder | None = None) -> str:
    best = trained.best
    return (
        f"# {config.name} {config.version}\n\n"
        f"LoRA adapter for `{BASE_MODEL_ID}` with a Banking77 intent head (`intent_head.*`, `labels.json`).\n"
        f"The head reads the mean/last hidden state after decoder layer {config.head.exit_layer}; "
        f"LoRA sits on layers {config.lora_layer_ids[0]}-{config.lora_layer_ids[-1]}."
        + (
            f" The head also reads the query's sentence embedding ({trained.queries.embedder})."
            if trained.queries
            else ""
        )
        + (
            f" A fine-tuned copy of {encoder.spec.base} (layers {encoder.spec.trained_layers[0]}-"
            f"{encoder.spec.trained_layers[-1]} trained, `intent_encoder.*`) classifies the query too; serving "
            f"averages head, encoder and retrieval vote with weights {1 - trained.retrieval_weight - encoder.spec.weight:.2f}"
            f" / {encoder.spec.weight:.2f} / {trained.retrieval_weight:.2f}."
            if encoder
            else ""
        )
        + "\n\n"
        f"Validation (held-out 20 % split): accuracy {best.accuracy:.4f}, macro-F1 {best.macro_f1:.4f} "
        f"(epoch {trained.best_epoch}).\n\n"
        f"Training data: {DATA_ATTRIBUTION}.\n"
    )


def publish(
    registry: AdapterRegistry,
    config: TrainConfig,
    trained: Trained,
    hidden_size: int,
    data_checksum: str,
    training_facts: dict[str, Any],
    overwrite: bool = False,
    encoder: TrainedEncoder | None = None,
    answers: Answers | None = None,
) -> AdapterManifest:
    """Write the folder to a temp dir and publish it as ``config.name@config.version``."""
    best = trained.best
    manifest = AdapterManifest(
        name=config.name,
        version=config.version,
        base_model=BASE_MODEL_ID,
        checksum="",  # publish() fills files and checksum from what it copies
        training={"config": config.model_dump(mode="json"), **training_facts},
        data_checksum=data_checksum,
        metrics={
            "accuracy": best.accuracy,
            "macro_f1": best.macro_f1,
            "head_accuracy": best.head_accuracy,
            "train_loss": best.train_loss,
        },
        description=(config.description + " " if config.description else "")
        + f"Training data: {DATA_ATTRIBUTION}.",
    )
    with tempfile.TemporaryDirectory(prefix="finserve-adapter-") as tmp:
        write_adapter_folder(Path(tmp), config, trained, hidden_size, encoder, answers)
        return registry.publish(tmp, manifest, overwrite=overwrite)
