"""The Milvus Lite search fast path: same results as milvus-lite's own executor, used only when it may be.

Every search here goes through pymilvus to a real Milvus Lite server; the two paths are compared by
installing and uninstalling the wrapper around the same collection.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from finserve.serving.retrieval import lite_fastpath
from finserve.serving.retrieval.store import MilvusStore
from finserve.serving.retrieval.types import Document

DIM = 16
NAME = "kb_test"


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _docs(n: int, kind: str) -> list[Document]:
    # Two tenants and several intents, so the tenant and intent filters select real subsets.
    return [
        Document(
            id=f"{kind}:{i}",
            text=f"{kind} text {i}",
            intent=f"intent_{i % 7}",
            kind=kind,
            tenant="acme" if i % 3 == 0 else "default",
        )
        for i in range(n)
    ]


@pytest.fixture
def sealed(tmp_path: Path) -> Iterator[tuple[MilvusStore, np.ndarray]]:
    """A sealed collection as ingest builds it: 40 answers and 600 examples, one segment per partition."""
    rng = np.random.default_rng(7)
    store = MilvusStore(str(tmp_path / "milvus.db"), timeout_s=10.0)
    store.create_collection(NAME, DIM, {})
    docs = _docs(40, "answer") + _docs(600, "example")
    store.insert(NAME, docs, _unit(rng, len(docs)))
    store.seal(NAME)
    try:
        yield store, _unit(rng, 25)
    finally:
        store.close()
        lite_fastpath.install()  # leave the process as the store found it


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts searches answered by the fast path."""
    calls: list[int] = []
    real = lite_fastpath._search_sealed

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(lite_fastpath, "_search_sealed", counting)
    return calls


def _all_searches(store: MilvusStore, queries: np.ndarray) -> list[list[tuple[str, float, str]]]:
    """(id, score, text) of every hit of four filtered searches per query."""
    out = []
    for q in queries:
        for kind, tenant, intents, k in (
            ("example", "default", None, 10),
            ("answer", "default", None, 3),
            ("example", "acme", ["intent_1", "intent_4"], 5),
            ("answer", "default", ["intent_2"], 2),
        ):
            hits = store.search(NAME, q, kind, tenant, intents, k)  # type: ignore[arg-type]
            out.append([(h.id, h.score, h.text) for h in hits])
    return out


def test_sealed_index_gives_the_same_hits_on_both_paths(sealed, fast_calls) -> None:
    store, queries = sealed
    lite_fastpath.uninstall()
    reference = _all_searches(store, queries)
    assert fast_calls == []
    assert lite_fastpath.install()
    fast = _all_searches(store, queries)
    assert len(fast_calls) == len(fast)  # every search took the fast path ...
    # ... and found what milvus-lite's own executor found. Scores only to float32 noise: milvus-lite's own
    # path differs from itself in the last bit between two runs of the same search.
    assert [[(i, t) for i, _, t in hits] for hits in fast] == [
        [(i, t) for i, _, t in hits] for hits in reference
    ]
    assert np.allclose(
        [s for hits in fast for _, s, _ in hits],
        [s for hits in reference for _, s, _ in hits],
        rtol=0,
        atol=1e-5,
    )
    assert all(len(hits) > 0 for hits in fast)


def test_a_delete_sends_searches_back_to_milvus_lite(sealed, fast_calls) -> None:
    store, queries = sealed
    nearest = store.search(NAME, queries[0], "example", "default", None, 1)[0]
    fast_calls.clear()
    store._client().delete(NAME, ids=[nearest.id])
    after = store.search(NAME, queries[0], "example", "default", None, 5)
    assert fast_calls == []  # a tombstone exists: the per-row pass is needed, milvus-lite runs it
    assert nearest.id not in {h.id for h in after}


def test_an_overwritten_id_sends_searches_back_to_milvus_lite(sealed, fast_calls) -> None:
    store, queries = sealed
    nearest = store.search(NAME, queries[0], "example", "default", None, 1)[0]
    replaced = Document(
        id=nearest.id, text="replaced", intent=nearest.intent, kind="example", tenant="default"
    )
    store.insert(NAME, [replaced], queries[:1])
    store.seal(NAME)  # the id now lives in two sealed segments of the same partition
    fast_calls.clear()
    hits = store.search(NAME, queries[0], "example", "default", None, 5)
    assert fast_calls == []
    assert [h.text for h in hits if h.id == nearest.id] == ["replaced"]  # only the newer row is live
