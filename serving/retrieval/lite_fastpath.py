"""Milvus Lite 3.2.2: skip a per-row Python pass that cannot change the result of a search on our index.

milvus-lite's search executor (``execute_search_with_index``) first walks every row of every searched
segment in Python, one dict lookup after another, to drop rows that a later upsert superseded or a delete
removed; only then does it ask the segment's faiss HNSW index. On the 8,002-row examples partition that
walk costs about 10 ms of CPU per search, twenty times the HNSW search itself, whatever the filter, index
type or output fields. An index built by ``finserve ingest`` is sealed once and never updated: ids are
unique and nothing is deleted, so the walk keeps every row.

:func:`install` wraps the executor. When the search's own snapshot proves there is nothing to drop (no
tombstones, nothing unflushed, unique ids across the searched segments) it runs milvus-lite's steps
without the walk: the same filter masks, the same index search, the same merge and projection. Any other
snapshot goes to milvus-lite's own code. The wrapper is installed only on the version it was checked
against (tests/serving/retrieval/test_retrieval_lite_fastpath.py compares both paths on real collections).
Adapted from milvus-lite 3.2.2 ``milvus_lite/search/executor_indexed.py`` (Apache-2.0).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SUPPORTED_VERSION = "3.2.2"
_installed: Callable[..., Any] | None = None  # milvus-lite's own executor while the wrapper is installed
_lock = threading.Lock()
# Segments are immutable, so "ids unique across these segments" is decided once per set of segments.
# Strong references keep ids from being reused by new objects while an entry lives; a few entries suffice
# (one per partition combination searched), and compaction's replaced segments age out.
_unique_sets: OrderedDict[tuple[int, ...], tuple[tuple[Any, ...], bool]] = OrderedDict()
_UNIQUE_SETS_MAX = 16


def install() -> bool:
    """Wrap milvus-lite's search executor (idempotent); False when this milvus-lite is not the one checked."""
    global _installed
    if _installed is not None:
        return True
    try:
        from importlib.metadata import version

        import milvus_lite.engine.collection as collection_module
    except ImportError:
        return False
    if version("milvus-lite") != SUPPORTED_VERSION:
        log.warning(
            "milvus-lite %s: search fast path not installed (checked against %s)",
            version("milvus-lite"),
            SUPPORTED_VERSION,
        )
        return False
    with _lock:
        if _installed is None:
            _installed = collection_module.execute_search_with_index
            collection_module.execute_search_with_index = _make_wrapper(_installed)
    return True


def uninstall() -> None:
    """Put milvus-lite's own executor back (tests compare the two paths)."""
    global _installed
    import milvus_lite.engine.collection as collection_module

    with _lock:
        if _installed is not None:
            collection_module.execute_search_with_index = _installed
            _installed = None


def _make_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    def execute_search_with_index(
        query_vectors: np.ndarray, segments: Any, memtable: Any, delta_index: Any, *args: Any, **kwargs: Any
    ) -> list[list[dict]]:
        segments = list(segments)
        # milvus-lite 3.2.2 passes everything after these by keyword; anything else is not the call we checked.
        in_scope = None if args else _in_scope(segments, kwargs.get("partition_names"))
        if in_scope is not None and _nothing_to_drop(in_scope, memtable, delta_index):
            return _search_sealed(query_vectors, in_scope, *args, **kwargs)
        return original(query_vectors, segments, memtable, delta_index, *args, **kwargs)

    execute_search_with_index.__wrapped__ = original  # type: ignore[attr-defined]
    return execute_search_with_index


def _in_scope(segments: list[Any], partition_names: Sequence[str] | None) -> list[Any] | None:
    wanted = set(partition_names) if partition_names else None
    scoped = [s for s in segments if s.num_rows > 0 and (wanted is None or s.partition in wanted)]
    return scoped or None  # no sealed rows in scope: leave the (trivial) search to milvus-lite


def _nothing_to_drop(segments: list[Any], memtable: Any, delta_index: Any) -> bool:
    """True when milvus-lite's dedup and tombstone pass would keep every row of ``segments``."""
    if len(delta_index) or memtable.size():  # tombstones, or unflushed rows/deletes (size counts both)
        return False
    if any(len(s.pk_to_row) != s.num_rows for s in segments):  # an id repeated inside a segment
        return False
    return len(segments) == 1 or _disjoint(segments)


def _disjoint(segments: list[Any]) -> bool:
    key = tuple(id(s) for s in segments)
    with _lock:
        entry = _unique_sets.get(key)
        if entry is not None and all(a is b for a, b in zip(entry[0], segments, strict=True)):
            _unique_sets.move_to_end(key)
            return entry[1]
    seen: set[Any] = set()
    total = 0
    for s in segments:
        seen.update(s.pk_to_row)
        total += s.num_rows
    verdict = len(seen) == total
    with _lock:
        _unique_sets[key] = (tuple(segments), verdict)
        while len(_unique_sets) > _UNIQUE_SETS_MAX:
            _unique_sets.popitem(last=False)
    return verdict


def _search_sealed(
    query_vectors: np.ndarray,
    segments: list[Any],
    top_k: int,
    metric_type: str,
    pk_field: str,
    vector_field: str,
    partition_names: list[str] | None = None,
    compiled_filter: Any = None,
    output_fields: list[str] | None = None,
    indexed_filter_plan: Any = None,
    project_record_fn: Callable[[dict], dict] | None = None,
    search_params: dict[str, Any] | None = None,
) -> list[list[dict]]:
    """milvus-lite's per-segment recall + global merge, for segments whose every row is live."""
    from milvus_lite.index.brute_force import BruteForceIndex
    from milvus_lite.search.indexed_filter import evaluate_segment_filter

    if query_vectors.ndim == 1:
        query_vectors = query_vectors.reshape(1, -1)
    if query_vectors.dtype != np.float32:
        query_vectors = query_vectors.astype(np.float32, copy=False)
    nq = int(query_vectors.shape[0])
    if nq == 0 or top_k <= 0:
        return [[] for _ in range(nq)]

    candidates: list[list[tuple[float, int, int]]] = [[] for _ in range(nq)]
    for source, seg in enumerate(segments):
        vectors, null_mask = seg.vector_data(vector_field)
        mask = (
            evaluate_segment_filter(seg, compiled_filter, indexed_filter_plan)
            if compiled_filter is not None
            else None
        )
        if null_mask is not None:
            mask = null_mask if mask is None else mask & null_mask
        if mask is not None:
            mask = mask.astype(bool, copy=False)
            if not mask.any():
                continue
        index = seg.indexes.get(vector_field)
        if index is None:
            index = BruteForceIndex.build(vectors, metric_type)
        # As milvus-lite does: no mask when every row is valid, so HNSW traversal is not bounded by a selector.
        local_ids, dists = index.search(
            query_vectors,
            top_k,
            valid_mask=None if mask is None or mask.all() else mask,
            params=search_params,
        )
        for q in range(nq):
            for j in range(top_k):
                lid = int(local_ids[q, j])
                if lid < 0:
                    break
                candidates[q].append((float(dists[q, j]), source, lid))

    if project_record_fn is not None:
        project = project_record_fn
    elif output_fields is None:

        def project(record: dict) -> dict:
            return {k: v for k, v in record.items() if k != pk_field and k != vector_field}
    else:
        keep = set(output_fields) - {pk_field}

        def project(record: dict) -> dict:
            return {k: record[k] for k in keep if k in record}

    results: list[list[dict]] = []
    for per_query in candidates:
        per_query.sort(key=lambda c: (c[0], c[1], c[2]))
        hits = []
        for dist, source, lid in per_query[:top_k]:
            record = segments[source].row_to_dict(lid)
            pk = record[pk_field] if pk_field in record else segments[source].pks[lid]
            hits.append({"id": pk, "distance": dist, "entity": project(record)})
        results.append(hits)
    return results
