"""A fine-tuned sentence encoder with its own intent head, shipped inside an adapter version.

The LLM head, the retrieval vote and a classifier on a fine-tuned MiniLM make different mistakes;
their equal average is what reaches the intent target (docs/training.md). The encoder part of an
adapter version is two files, both under the registry checksum (vLLM and PEFT ignore them):

- ``intent_encoder.json``: :class:`EncoderSpec` (which base weights, which layers were trained, mix weight);
- ``intent_encoder.safetensors``: the trained layers' tensors (``encoder.layer.N.*``) and the linear head
  (``head.weight``, ``head.bias``). Everything else is the base encoder's, so a version stays tens of MB.

Training freezes the embeddings and the layers below the trained ones and caches their output once
per row; :meth:`EncoderClassifier.prefix` and :meth:`EncoderClassifier.logits_from` are that split,
and serving runs the same two in sequence.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, model_validator

from finserve.contracts import StrictModel

from .bert import BatchTokenizer, BertEncoder
from .encoder import stack

ENCODER_SPEC = "intent_encoder.json"
ENCODER_WEIGHTS = "intent_encoder.safetensors"
ENCODER_FORMAT = 1


class EncoderSpec(StrictModel):
    """Which encoder weights the head reads and how much the encoder weighs in the served mix."""

    format: int = Field(ENCODER_FORMAT, description="Encoder file format version.")
    base: str = Field(
        description="Fingerprint (name + weights hash) of the base encoder the trained layers replace."
    )
    layers: int = Field(gt=0, description="Transformer layers of the base encoder.")
    trained_layers: list[int] = Field(
        description="Layers whose weights the file carries (the top ones); others are the base's."
    )
    max_length: int = Field(gt=0, description="Tokens per query kept (longer queries are truncated).")
    weight: float = Field(
        gt=0.0, le=1.0, description="Share of the encoder's probabilities in the served mix."
    )

    @model_validator(mode="after")
    def _top_layers(self) -> EncoderSpec:
        if not self.trained_layers or self.trained_layers != list(
            range(self.layers - len(self.trained_layers), self.layers)
        ):
            raise ValueError(
                f"trained_layers must be the top layers of {self.layers}, got {self.trained_layers}"
            )
        return self

    @property
    def first_trained(self) -> int:
        return self.trained_layers[0]


class EncoderClassifier(torch.nn.Module):
    """A BERT-style encoder, mean pooling and a linear intent head.

    Training runs transformers' ``AutoModel`` and tokenizer (:func:`load_base_encoder`); serving our own modules
    of the same names (:func:`load_encoder`, bert.py).
    """

    def __init__(
        self, bert: Any, tokenizer: Any, n_labels: int, max_length: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.bert = bert
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(bert.config.hidden_size, n_labels)

    @property
    def layers(self) -> Any:
        return self.bert.encoder.layer

    def prefix(self, texts: Sequence[str], first_trained: int) -> list[torch.Tensor]:
        """Hidden states below layer ``first_trained``, one (length, dim) tensor per text (no padding)."""
        device = self.head.weight.device
        if isinstance(self.tokenizer, BatchTokenizer):  # set up once with this max_length
            batch = {name: ids.to(device) for name, ids in self.tokenizer(texts).items()}
        else:
            batch = self.tokenizer(
                list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(device)
        hidden = self.bert.embeddings(
            input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids")
        )
        mask = batch["attention_mask"]
        for layer in self.layers[:first_trained]:
            hidden = _out(layer(hidden, attention_mask=_additive(mask)))
        lengths = mask.sum(dim=1).tolist()
        return [hidden[i, : int(n)] for i, n in enumerate(lengths)]

    def logits_from(self, states: Sequence[torch.Tensor], first_trained: int) -> torch.Tensor:
        """Logits from prefix states: the layers from ``first_trained`` up, mean pooling, head."""
        hidden, mask = stack(states)
        for layer in self.layers[first_trained:]:
            hidden = _out(layer(hidden, attention_mask=_additive(mask)))
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        return self.head(self.dropout(pooled))

    def probabilities(
        self, texts: Sequence[str], first_trained: int = 0, batch_size: int = 64
    ) -> torch.Tensor:
        """Intent probabilities (rows in input order), inference mode; batches of similar length."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.zeros((len(texts), self.head.out_features))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                states = self.prefix([texts[i] for i in chunk], first_trained)
                out[chunk] = torch.softmax(self.logits_from(states, first_trained).float(), dim=-1).cpu()
        return out


def _additive(mask: torch.Tensor) -> torch.Tensor:
    """A 0/1 padding mask as the additive (batch, 1, 1, keys) float mask a BertLayer takes."""
    return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


def _out(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def load_base_encoder(path: Path, n_labels: int, max_length: int, dropout: float = 0.0) -> EncoderClassifier:
    """The base encoder from local files with a fresh (untrained) head."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    bert = AutoModel.from_pretrained(str(path), dtype=torch.float32, local_files_only=True)
    return EncoderClassifier(bert, tokenizer, n_labels, max_length, dropout)


def trained_tensors(model: EncoderClassifier, spec: EncoderSpec) -> dict[str, torch.Tensor]:
    """What a version stores: the trained layers and the head (contiguous fp32 on CPU)."""
    wanted = {f"encoder.layer.{i}." for i in spec.trained_layers}
    tensors = {k: v for k, v in model.bert.state_dict().items() if any(k.startswith(w) for w in wanted)}
    tensors |= {f"head.{k}": v for k, v in model.head.state_dict().items()}
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}


def save_encoder(folder: str | Path, spec: EncoderSpec, model: EncoderClassifier) -> None:
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_file(trained_tensors(model, spec), str(out / ENCODER_WEIGHTS))
    (out / ENCODER_SPEC).write_text(spec.model_dump_json(indent=2) + "\n", encoding="utf-8")


def has_encoder(folder: str | Path) -> bool:
    return all((Path(folder) / name).is_file() for name in (ENCODER_SPEC, ENCODER_WEIGHTS))


def read_spec(folder: str | Path) -> EncoderSpec:
    return EncoderSpec.model_validate_json((Path(folder) / ENCODER_SPEC).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=4)
def shared_base(base_path: Path) -> BertEncoder:
    """The base encoder's weights, loaded once per process and never changed: every version's encoder reads its
    frozen layers from here (BertEncoder.sharing)."""
    return BertEncoder.from_folder(base_path)


@functools.lru_cache(maxsize=4)
def shared_tokenizer(base_path: Path, max_length: int) -> BatchTokenizer:
    """One tokenizer per base and length for every version (about 8 MB each; only read once set up)."""
    return BatchTokenizer(base_path, max_length)


def load_encoder(folder: str | Path, base_path: Path, n_labels: int) -> tuple[EncoderSpec, EncoderClassifier]:
    """The version's encoder, as serving runs it: base weights from ``base_path`` with the stored layers and head
    on top, in our own BERT modules (bert.py: the same names and values as transformers' BertModel, without it).

    The caller checks that ``base_path`` holds the weights named by ``spec.base``; a file whose
    tensors are not exactly the spec's layers and head is an error, never a partial load.
    """
    from safetensors.torch import load_file

    spec = read_spec(folder)
    tensors = load_file(str(Path(folder) / ENCODER_WEIGHTS))
    bert = shared_base(base_path).sharing(spec.trained_layers)  # the version's layers are loaded into copies
    model = EncoderClassifier(bert, shared_tokenizer(base_path, spec.max_length), n_labels, spec.max_length)
    if len(model.layers) != spec.layers:
        raise ValueError(
            f"{folder}: the encoder spec has {spec.layers} layers, the base encoder {len(model.layers)}"
        )
    expected = set(trained_tensors(model, spec))
    if set(tensors) != expected:
        raise ValueError(
            f"{folder}/{ENCODER_WEIGHTS}: tensors {sorted(set(tensors) ^ expected)[:4]} do not match "
            f"the spec's trained layers {spec.trained_layers} and a {n_labels}-label head"
        )
    model.bert.load_state_dict({k: v for k, v in tensors.items() if k.startswith("encoder.")}, strict=False)
    model.head.load_state_dict(
        {k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")}
    )
    return spec, model.eval()
