"""Turning trained weights into a registry version: PEFT folder + intent head + model card + manifest."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from finserve.contracts import AdapterManifest, AdapterRegistry
from finserve.serving.inference.base_model import BASE_MODEL_ID
from finserve.serving.intent.head import HeadSpec, QueryEmbedding, save_head
from finserve.serving.intent.sentence_encoder import save_encoder

from .config import TrainConfig
from .data import DATA_ATTRIBUTION
from .encoder_trainer import TrainedEncoder
from .trainer import Trained

ADAPTER_CONFIG = "adapter_config.json"


def write_adapter_folder(
    folder: Path, config: TrainConfig, trained: Trained, hidden_size: int, encoder: TrainedEncoder | None = None
) -> None:
    """The PEFT LoRA files (loadable by vLLM and transformers+PEFT), the intent head and the fine-tuned
    encoder (if trained) beside them."""
    trained.model.save_pretrained(str(folder))
    # PEFT records the local folder it loaded from; the registry promises the hub id of the base.
    cfg_path = folder / ADAPTER_CONFIG
    adapter_cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    adapter_cfg["base_model_name_or_path"] = BASE_MODEL_ID
    # PEFT writes target_modules from a set, in hash order: sorted, the same training run gives the
    # same bytes and so the same registry checksum.
    if isinstance(adapter_cfg.get("target_modules"), list):
        adapter_cfg["target_modules"] = sorted(adapter_cfg["target_modules"])
    cfg_path.write_text(json.dumps(adapter_cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    spec = HeadSpec(
        base_model=BASE_MODEL_ID,
        hidden_size=hidden_size,
        exit_layer=config.head.exit_layer,
        lora_layers=config.lora_layer_ids,
        pooling=config.head.pooling,
        max_length=config.data.max_length,
        retrieval_weight=trained.retrieval_weight,
        vote_temperature=config.head.vote_temperature,
        query_embedding=QueryEmbedding(embedder=trained.queries.embedder, dim=trained.queries.dim,
                                       scale=config.head.query_scale) if trained.queries else None,
    )
    save_head(folder, spec, trained.head, trained.labels)
    if encoder is not None:
        save_encoder(folder, encoder.spec, encoder.model)
    (folder / "README.md").write_text(model_card(config, trained, encoder), encoding="utf-8")


def model_card(config: TrainConfig, trained: Trained, encoder: TrainedEncoder | None = None) -> str:
    best = trained.best
    return (
        f"# {config.name} {config.version}\n\n"
        f"LoRA adapter for `{BASE_MODEL_ID}` with a Banking77 intent head (`intent_head.*`, `labels.json`).\n"
        f"The head reads the mean/last hidden state after decoder layer {config.head.exit_layer}; "
        f"LoRA sits on layers {config.lora_layer_ids[0]}-{config.lora_layer_ids[-1]}."
        + (f" The head also reads the query's sentence embedding ({trained.queries.embedder})."
           if trained.queries else "")
        + (f" A fine-tuned copy of {encoder.spec.base} (layers {encoder.spec.trained_layers[0]}-"
           f"{encoder.spec.trained_layers[-1]} trained, `intent_encoder.*`) classifies the query too; serving "
           f"averages head, encoder and retrieval vote with weights {1 - trained.retrieval_weight - encoder.spec.weight:.2f}"
           f" / {encoder.spec.weight:.2f} / {trained.retrieval_weight:.2f}." if encoder else "") + "\n\n"
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
        metrics={"accuracy": best.accuracy, "macro_f1": best.macro_f1, "head_accuracy": best.head_accuracy,
                 "train_loss": best.train_loss},
        description=(config.description + " " if config.description else "") + f"Training data: {DATA_ATTRIBUTION}.",
    )
    with tempfile.TemporaryDirectory(prefix="finserve-adapter-") as tmp:
        write_adapter_folder(Path(tmp), config, trained, hidden_size, encoder)
        return registry.publish(tmp, manifest, overwrite=overwrite)
