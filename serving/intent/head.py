"""The intent head an adapter version carries beside its LoRA weights.

Three files, all covered by the registry checksum; vLLM and PEFT ignore them:

- ``intent_head.json``: :class:`HeadSpec` (which layer the head reads, pooling, fusion weight);
- ``labels.json``: the intent labels in logit order;
- ``intent_head.safetensors``: the linear layer's ``weight`` and ``bias``.

A head may also read the retrieval embedder's vector of the query (``HeadSpec.query_embedding``):
its input is then ``[pooled LLM state, scale * query vector]``. The LoRA is trained jointly with that
head, so the adapter learns what the sentence embedder misses; the spec names the embedder by its
weights' fingerprint and serving refuses a head whose embedder it does not run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import Field

from finserve.contracts import StrictModel

from .encoder import Pooling

HEAD_SPEC = "intent_head.json"
HEAD_WEIGHTS = "intent_head.safetensors"
LABELS = "labels.json"
HEAD_FORMAT = 1
# A version tuned for answers keeps two LoRAs: the generator's at the top of the folder (what vLLM and the
# CPU engine load) and the intent head's own in this subfolder, trained for the head on the truncated model.
INTENT_LORA_DIR = "intent_lora"


class QueryEmbedding(StrictModel):
    """The sentence embedder whose query vector the head reads beside the LLM's hidden state."""

    embedder: str = Field(description="Embedder fingerprint (name + weights hash) the head was trained with.")
    dim: int = Field(gt=0, description="Width of the embedder's vectors.")
    scale: float = Field(gt=0.0, description="Factor on the unit-length vector before the head reads it.")


class HeadSpec(StrictModel):
    """How to turn the LLM's hidden states into intent probabilities."""

    format: int = Field(HEAD_FORMAT, description="Head file format version.")
    base_model: str = Field(description="Base model id whose hidden states the head reads.")
    hidden_size: int = Field(gt=0, description="Width of one hidden state of the base model.")
    exit_layer: int = Field(gt=0, description="Decoder layers run before pooling; later layers are skipped.")
    lora_layers: list[int] = Field(description="Decoder layers carrying LoRA weights (all below exit_layer).")
    pooling: Pooling = Field(description="mean, last token, or both concatenated (mean_last).")
    max_length: int = Field(gt=0, description="Tokens per query kept (longer queries are truncated).")
    retrieval_weight: float = Field(
        ge=0.0,
        le=1.0,
        description="Weight of the retrieval vote mixed into the head's probabilities (0: head only).",
    )
    vote_temperature: float = Field(
        gt=0.0, description="Softmax temperature over neighbour similarities in the vote."
    )
    query_embedding: QueryEmbedding | None = Field(
        None, description="Also read the query's sentence embedding (None: the LLM's hidden state only)."
    )

    @property
    def features(self) -> int:
        llm = self.hidden_size * (2 if self.pooling == "mean_last" else 1)
        return llm + (self.query_embedding.dim if self.query_embedding else 0)


class IntentHead(torch.nn.Module):
    """A linear classifier over pooled hidden states, optionally with the query's sentence embedding
    appended (times ``query_scale``); dropout only while training."""

    def __init__(self, features: int, n_labels: int, dropout: float = 0.0, query_scale: float = 1.0) -> None:
        super().__init__()
        self.dropout = torch.nn.Dropout(dropout)
        self.linear = torch.nn.Linear(features, n_labels)
        self.query_scale = query_scale

    def forward(self, pooled: torch.Tensor, query: torch.Tensor | None = None) -> torch.Tensor:
        x = pooled.to(self.linear.weight.dtype)
        if query is not None:
            x = torch.cat([x, query.to(x.dtype) * self.query_scale], dim=-1)
        if x.shape[-1] != self.linear.in_features:
            raise ValueError(
                f"intent head reads {self.linear.in_features} features, got {x.shape[-1]} "
                "(a head trained with a query embedding needs one, and only then)"
            )
        return self.linear(self.dropout(x))


def save_head(folder: str | Path, spec: HeadSpec, head: IntentHead, labels: list[str]) -> None:
    from safetensors.torch import save_file

    if head.linear.out_features != len(labels):
        raise ValueError(f"head has {head.linear.out_features} outputs but {len(labels)} labels")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in head.linear.state_dict().items()
    }
    save_file(tensors, str(out / HEAD_WEIGHTS))
    (out / LABELS).write_text(json.dumps(labels, indent=1) + "\n", encoding="utf-8")
    (out / HEAD_SPEC).write_text(spec.model_dump_json(indent=2) + "\n", encoding="utf-8")


def intent_lora_folder(folder: str | Path) -> Path:
    """The PEFT folder the intent head's LoRA loads from: ``intent_lora/`` when the version has one (its top-level
    LoRA is then the generator's, tuned for answers), else the version folder itself (older versions: one LoRA)."""
    sub = Path(folder) / INTENT_LORA_DIR
    return sub if (sub / "adapter_config.json").is_file() else Path(folder)


def has_head(folder: str | Path) -> bool:
    return all((Path(folder) / name).is_file() for name in (HEAD_SPEC, HEAD_WEIGHTS, LABELS))


def load_head(folder: str | Path) -> tuple[HeadSpec, IntentHead, list[str]]:
    from safetensors.torch import load_file

    root = Path(folder)
    spec = HeadSpec.model_validate_json((root / HEAD_SPEC).read_text(encoding="utf-8"))
    labels = json.loads((root / LABELS).read_text(encoding="utf-8"))
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"{root / LABELS}: expected a JSON list of intent names")
    head = IntentHead(
        spec.features, len(labels), query_scale=spec.query_embedding.scale if spec.query_embedding else 1.0
    )
    head.linear.load_state_dict(load_file(str(root / HEAD_WEIGHTS)))
    head.eval()
    return spec, head, labels
