"""Build the retrieval index: answers + Banking77 examples -> embeddings -> a new Milvus build -> alias."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

from finserve.serving.paths import banking77_csv

from .config import RetrievalConfig
from .embedder import Embedder, default_model_path, model_fingerprint
from .kb import Row, build_documents, default_split, index_version, load_answers, read_banking77
from .store import PROP_EMBEDDER, PROP_VERSION, MilvusStore, build_name
from .types import IngestReport

log = logging.getLogger(__name__)


def ingest(
    config: RetrievalConfig,
    rows: Iterable[Row] | None = None,
    answers_path: str | Path | None = None,
    tenant: str = "default",
    progress: bool = True,
    *,
    force: bool = False,
    embedder: Embedder | None = None,
) -> IngestReport:
    """Index the answers and ``rows`` (default: the training part of :func:`default_split` of Banking77).

    Skips the work when the collection already holds this exact version, unless ``force``. Searches keep
    using the previous build until the new one is complete.
    """
    started = time.perf_counter()
    if rows is None:
        rows = default_split(read_banking77(banking77_csv()))[0]
    docs = build_documents(load_answers(answers_path), rows, tenant)
    # The version needs only the model's fingerprint: a current index is detected without loading it.
    model_path = Path(config.embedder_path) if config.embedder_path else default_model_path()
    embedder_id = embedder.model_id if embedder else model_fingerprint(model_path)
    version = index_version(docs, embedder_id)
    answers = sum(d.kind == "answer" for d in docs)
    alias = config.collection
    store = MilvusStore(config.resolved_milvus_uri(), config.milvus_timeout_s)
    try:
        current = store.index_info(alias)
        if current is not None and current.version == version and not force:
            log.info("index %s is current, skipping ingest", version[:12])
            return IngestReport(
                index_version=version,
                collection=current.collection,
                answers=answers,
                examples=len(docs) - answers,
                seconds=time.perf_counter() - started,
                skipped=True,
            )
        name = build_name(alias, version)
        if store.has_collection(name):
            store.drop_collection(name)  # a partial build from an interrupted run, or --force
        embedder = embedder or Embedder(model_path, backend=config.embed_backend)
        store.create_collection(name, embedder.dim, {PROP_VERSION: version, PROP_EMBEDDER: embedder_id})
        batch = config.ingest_batch_size
        with _progress(len(docs), progress) as bar:
            for start in range(0, len(docs), batch):
                chunk = docs[start : start + batch]
                store.insert(name, chunk, embedder.embed([d.text for d in chunk]))
                bar.update(len(chunk))
        store.seal(name)
        store.point_alias(alias, name)
        dropped = store.drop_stale_builds(alias, keep=name)
        if dropped:
            log.info("dropped old builds: %s", ", ".join(dropped))
    finally:
        store.close()
    return IngestReport(
        index_version=version,
        collection=name,
        answers=answers,
        examples=len(docs) - answers,
        seconds=time.perf_counter() - started,
    )


def _progress(total: int, enabled: bool):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    return tqdm(total=total, desc="ingest", unit="doc", disable=not enabled)


def index_exists(config: RetrievalConfig) -> bool:
    """True when the configured alias resolves to a finserve build (any version)."""
    store = MilvusStore(config.resolved_milvus_uri(), config.milvus_timeout_s)
    try:
        return store.index_info(config.collection) is not None
    finally:
        store.close()
