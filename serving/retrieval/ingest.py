"""Build the retrieval index: answers + Banking77 examples -> PII screen -> embeddings -> a new Milvus
build -> alias.

With a guard, every document is scanned first; one with findings is quarantined per
``config.quarantine`` (left out, or indexed masked), listed in the quarantine file next to the index
and reported to ``on_quarantine`` (the CLI writes an audit record for each). See pii_policy.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from finserve.contracts.evaluation import OUT_OF_SCOPE
from finserve.serving.paths import banking77_csv, data_dir

from .config import RetrievalConfig
from .embedder import Embedder, default_model_path, model_fingerprint
from .kb import (
    Row,
    build_documents,
    default_split,
    index_version,
    load_answers,
    load_off_topic,
    read_banking77,
)
from .pii_policy import QuarantinePolicy, QuarantineRecord, quarantine_path, write_quarantine
from .store import PROP_EMBEDDER, PROP_VERSION, MilvusStore, build_name
from .types import Document, IngestReport

log = logging.getLogger(__name__)


class Scanned(Protocol):
    """What ingest needs of a guard result (serving.guard.engine.GuardResult)."""

    text: str

    def counts(self) -> dict[str, int]: ...


Scan = Callable[[list[str]], Sequence[Scanned]]
"""The PII guard's scan_many: texts -> results, in order."""


def screen(
    docs: list[Document],
    scan: Scan,
    policy: QuarantinePolicy,
) -> tuple[list[Document], list[tuple[Document, Scanned]]]:
    """The documents to index, and each quarantined document with its scan (pure apart from the scan)."""
    results = scan([d.text for d in docs])
    keep: list[Document] = []
    quarantined: list[tuple[Document, Scanned]] = []
    for doc, result in zip(docs, results, strict=True):
        if not result.counts():
            keep.append(doc)
            continue
        quarantined.append((doc, result))
        if policy is QuarantinePolicy.mask:
            keep.append(doc.model_copy(update={"text": result.text}))
    return keep, quarantined


def ingest(
    config: RetrievalConfig,
    rows: Iterable[Row] | None = None,
    answers_path: str | Path | None = None,
    tenant: str = "default",
    progress: bool = True,
    *,
    force: bool = False,
    embedder: Embedder | None = None,
    scan: Scan | None = None,
    on_quarantine: Callable[[QuarantineRecord, str], None] | None = None,
) -> IngestReport:
    """Index the answers, ``rows`` (default: the training part of :func:`default_split` of Banking77) and the
    off-topic questions of ``config.off_topic_path`` (examples of the intent ``out_of_scope``).

    Skips the work when the collection already holds this exact version, unless ``force``. Searches keep
    using the previous build until the new one is complete. With ``scan`` (the guard's scan_many) every
    document is screened for PII first; ``on_quarantine(record, masked_text)`` is called for each
    quarantined document of a build (not when the index is current).
    """
    started = time.perf_counter()
    if rows is None:
        rows = default_split(read_banking77(banking77_csv()))[0]
    off_topic = load_off_topic(config.off_topic_path)
    docs = build_documents(load_answers(answers_path), rows, tenant, off_topic)
    policy = config.quarantine.policy
    quarantined: list[tuple[Document, Scanned]] = []
    if scan is not None:
        docs, quarantined = screen(docs, scan, policy)
    # The version needs only the model's fingerprint: a current index is detected without loading it.
    model_path = Path(config.embedder_path) if config.embedder_path else default_model_path()
    embedder_id = embedder.model_id if embedder else model_fingerprint(model_path)
    version = index_version(docs, embedder_id)
    answers = sum(d.kind == "answer" for d in docs)
    off_topic_docs = sum(d.intent == OUT_OF_SCOPE for d in docs)
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
                off_topic=off_topic_docs,
                seconds=time.perf_counter() - started,
                skipped=True,
                quarantined=len(quarantined),
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
        if scan is not None:
            # Written before the alias moves: the list always describes the index being served (or about to be).
            records = [
                QuarantineRecord(
                    doc_id=d.id,
                    kind=d.kind,
                    intent=d.intent,
                    tenant=d.tenant,
                    policy=policy,
                    entities=r.counts(),
                    index_version=version,
                )
                for d, r in quarantined
            ]
            write_quarantine(
                quarantine_path(config.quarantine, config.resolved_milvus_uri(), data_dir()), records
            )
            for record, (_, result) in zip(records, quarantined, strict=True):
                if on_quarantine is not None:
                    on_quarantine(record, result.text)
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
        off_topic=off_topic_docs,
        seconds=time.perf_counter() - started,
        quarantined=len(quarantined),
    )


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="ingest", unit="doc", disable=not enabled)


def index_exists(config: RetrievalConfig) -> bool:
    """True when the configured alias resolves to a finserve build (any version)."""
    store = MilvusStore(config.resolved_milvus_uri(), config.milvus_timeout_s)
    try:
        return store.index_info(config.collection) is not None
    finally:
        store.close()
