"""OpenAI's /v1/embeddings, served by the retrieval embedder (all-MiniLM-L6-v2, 384 dimensions).

Every input is guarded first and the vector is of the **masked** text (``<CREDIT_CARD>`` where the
card number was): no raw PII reaches the embedder, and an input the policy blocks is refused (422) as
in chat. Responses say so (``finserve.masked``); the request leaves one audit line with the masked
inputs and the count of vectors, whatever its outcome.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from finserve.contracts import StrictModel

from ..errors import InvalidRequest, ModelNotFound, PIIBlocked, map_error
from ..pipeline import CLIENT_CLOSED, Pipeline, RequestContext
from ..retrieval.config import RetrievalConfig
from ..schemas import OpenAIRequest

MAX_INPUTS = 256  # per request; the body limit (gateway.max_body_bytes) also applies


def embedding_model(config: RetrievalConfig) -> str:
    """The public name of the retrieval embedder, as its index fingerprint names it."""
    if config.embedder_path is None:
        return "all-MiniLM-L6-v2"
    path = Path(config.embedder_path)
    return "all-MiniLM-L6-v2" if path.name == "model" else path.name


class EmbeddingRequest(OpenAIRequest):
    """OpenAI's embeddings request (unknown OpenAI fields are tolerated)."""

    model: str = Field(description="The embedder's name, see GET /v1/models.")
    input: str | list[str] = Field(description="One text or a list of texts (token arrays are not served).")
    encoding_format: Literal["float", "base64"] = Field(
        "float",
        description="float: lists of numbers; base64: little-endian float32 bytes (the openai SDK's default).",
    )
    dimensions: int | None = Field(None, ge=1, description="Only the embedder's own size.")
    user: str | None = Field(None, description="End-user id (pseudonymised; not used for embeddings).")

    @field_validator("input", mode="before")
    @classmethod
    def _input_shape(cls, value: object) -> object:
        if isinstance(value, str) or (
            isinstance(value, list) and value and all(isinstance(p, str) for p in value)
        ):
            return value
        raise ValueError("must be a string or a non-empty array of strings (token arrays are not served)")


class Embedding(StrictModel):
    object: Literal["embedding"] = Field("embedding", description="OpenAI's object type.")
    index: int = Field(description="Position of the input.")
    embedding: list[float] | str = Field(description="The unit vector (or its base64 float32 bytes).")


class EmbeddingUsage(StrictModel):
    prompt_tokens: int = Field(
        description="Not counted (0): the embedder's tokens are not billed or metered."
    )
    total_tokens: int = Field(description="As prompt_tokens.")


class EmbeddingInfo(StrictModel):
    request_id: str = Field(description="The request's id (also x-request-id).")
    masked: Literal[True] = Field(True, description="The vectors are of the guarded (masked) text.")
    pii: dict[str, int] = Field(default_factory=dict, description="Entity type -> count found in the inputs.")


class EmbeddingList(StrictModel):
    object: Literal["list"] = Field("list", description="OpenAI's object type.")
    data: list[Embedding] = Field(description="One per input, in input order.")
    model: str = Field(description="The embedder's name.")
    usage: EmbeddingUsage = Field(description="Token counts (not counted: 0).")
    finserve: EmbeddingInfo = Field(description="What finserve adds: the vectors are of masked text.")


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector


async def create_embeddings(pipeline: Pipeline, req: EmbeddingRequest, ctx: RequestContext) -> EmbeddingList:
    """Guard, embed the masked texts, audit. Raises the domain errors the gateway maps."""
    name = embedding_model(pipeline.config.retrieval)
    status, error = 200, None
    try:
        if req.model != name:
            # Never echoes the name asked for: it is client input.
            raise ModelNotFound(
                f"the model is not served for embeddings; use {name} (see GET /v1/models)", param="model"
            )
        ctx.model = name
        texts = [req.input] if isinstance(req.input, str) else req.input
        if len(texts) > MAX_INPUTS:
            raise InvalidRequest(f"input: at most {MAX_INPUTS} texts per request", param="input")
        scanned = await pipeline.guard.scan_many(texts)
        counts: dict[str, int] = {}
        for r in scanned:
            for entity, n in r.counts().items():
                counts[entity] = counts.get(entity, 0) + n
        ctx.pii["input"] = counts
        ctx.masked_input = "\n".join(r.text for r in scanned)
        blocked = sorted({t for r in scanned for t in r.blocked})
        if blocked:
            raise PIIBlocked(blocked)
        vectors = await pipeline.retrieval.embed_texts([r.text for r in scanned])
        dim = len(vectors[0]) if vectors else 0
        if req.dimensions is not None and req.dimensions != dim:
            raise InvalidRequest(f"dimensions: this embedder gives {dim}", param="dimensions")
        ctx.masked_output = f"<{len(vectors)} embeddings of {dim} dimensions>"
        return EmbeddingList(
            data=[
                Embedding(index=i, embedding=_encode(v, req.encoding_format)) for i, v in enumerate(vectors)
            ],
            model=name,
            usage=EmbeddingUsage(prompt_tokens=0, total_tokens=0),
            finserve=EmbeddingInfo(request_id=ctx.request_id, pii=counts),
        )
    except asyncio.CancelledError:
        status, error = CLIENT_CLOSED, "cancelled"
        raise
    except BaseException as exc:
        mapped = map_error(exc)
        status, error = mapped.status, mapped.code
        raise
    finally:
        # Shielded: a client that leaves mid-request still leaves its line.
        await asyncio.shield(pipeline.finish(ctx, status, error))
