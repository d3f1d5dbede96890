"""What the intent classifier loads but does not own: the base LLM folder (the generator's too) and the
sentence embedder (retrieval's too). Whoever builds the classifier passes them in
(:func:`finserve.serving.wiring.intent_assets`), so the intent stage imports neither inference nor
retrieval and each stage can change on its own."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol


class QueryEmbedder(Protocol):
    """A sentence embedder as retrieval runs it: unit-length rows, a fingerprint of its weights."""

    model_id: str
    dim: int

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> Any: ...


class EmbedderFactory(Protocol):
    def __call__(
        self, path: str | None, *, threads: int | None, backend: Literal["onnx", "torch"]
    ) -> QueryEmbedder: ...


@dataclass(frozen=True)
class IntentAssets:
    """Where the classifier's models come from when its config does not name a folder."""

    base_model: Callable[[], Path]
    """The base LLM folder (converted once, cached under the data dir)."""
    embedder: EmbedderFactory
    """Opens the query embedder for heads that read query embeddings."""
    default_embedder_path: Callable[[], Path]
    """The folder of the stock sentence encoder (the base of a version's fine-tuned encoder)."""
    fingerprint: Callable[[Path], str]
    """The fingerprint of an encoder folder, as adapter manifests record it."""
