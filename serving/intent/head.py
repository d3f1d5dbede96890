"""The intent head an adapter version carries beside its LoRA weights.

Three files, all covered by the registry checksum; vLLM and PEFT ignore them:

- ``intent_head.json``: :class:`HeadSpec` (which layer the head reads, pooling, fusion weight);
- ``labels.json``: the intent labels in logit order;
- ``intent_head.safetensors``: the linear layer's ``weight`` and ``bias``.
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
        ge=0.0, le=1.0, description="Weight of the retrieval vote mixed into the head's probabilities (0: head only)."
    )
    vote_temperature: float = Field(gt=0.0, description="Softmax temperature over neighbour similarities in the vote.")

    @property
    def features(self) -> int:
        return self.hidden_size * (2 if self.pooling == "mean_last" else 1)


class IntentHead(torch.nn.Module):
    """A linear classifier over pooled hidden states (dropout only while training)."""

    def __init__(self, features: int, n_labels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = torch.nn.Dropout(dropout)
        self.linear = torch.nn.Linear(features, n_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(pooled.to(self.linear.weight.dtype)))


def save_head(folder: str | Path, spec: HeadSpec, head: IntentHead, labels: list[str]) -> None:
    from safetensors.torch import save_file

    if head.linear.out_features != len(labels):
        raise ValueError(f"head has {head.linear.out_features} outputs but {len(labels)} labels")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in head.linear.state_dict().items()}
    save_file(tensors, str(out / HEAD_WEIGHTS))
    (out / LABELS).write_text(json.dumps(labels, indent=1) + "\n", encoding="utf-8")
    (out / HEAD_SPEC).write_text(spec.model_dump_json(indent=2) + "\n", encoding="utf-8")


def has_head(folder: str | Path) -> bool:
    return all((Path(folder) / name).is_file() for name in (HEAD_SPEC, HEAD_WEIGHTS, LABELS))


def load_head(folder: str | Path) -> tuple[HeadSpec, IntentHead, list[str]]:
    from safetensors.torch import load_file

    root = Path(folder)
    spec = HeadSpec.model_validate_json((root / HEAD_SPEC).read_text(encoding="utf-8"))
    labels = json.loads((root / LABELS).read_text(encoding="utf-8"))
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"{root / LABELS}: expected a JSON list of intent names")
    head = IntentHead(spec.features, len(labels))
    head.linear.load_state_dict(load_file(str(root / HEAD_WEIGHTS)))
    head.eval()
    return spec, head, labels
