"""The in-memory answers table against Milvus Lite's own search of the same partition (real index, real
MiniLM), and the Retriever with and without it."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from finserve.serving.retrieval import RetrievalConfig, Retriever, SearchFilters
from finserve.serving.retrieval.answers import AnswerTable
from finserve.serving.retrieval.store import MilvusStore

QUERIES = [
    "How do I activate my new card?",
    "It has been two weeks and my card still hasn't arrived",
    "why was I charged a fee for paying by card",
    "my transfer has not reached my friend",
    "can I get cash in another currency",
    "what is this",
]


@pytest.fixture(scope="module")
def store_and_table(kb_index):
    store = MilvusStore(kb_index, 5.0)
    info = store.index_info("finserve_kb")
    rows = store.fetch_kind(info.collection, "answer", 1000)
    yield store, AnswerTable.build(info.version, rows)
    store.close()


def test_table_holds_every_answer_of_the_build(store_and_table) -> None:
    _, table = store_and_table
    assert len(table) == 77 and len(set(table.intents)) == 77
    assert np.allclose(np.linalg.norm(table.vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("query", QUERIES)
def test_table_search_matches_milvus(store_and_table, embedder, query: str) -> None:
    store, table = store_and_table
    vector = embedder.embed([query])[0]
    for intents, limit in ((None, 3), (None, 10), (["card_arrival", "pin_blocked", "exchange_rate"], 3)):
        ours = table.search(vector, "default", intents, limit)
        milvus = store.search("finserve_kb", vector, "answer", "default", intents, limit)
        assert [h.id for h in ours] == [h.id for h in milvus]
        assert [h.model_dump(exclude={"score"}) for h in ours] == [
            h.model_dump(exclude={"score"}) for h in milvus
        ]
        assert np.allclose([h.score for h in ours], [h.score for h in milvus], atol=1e-4)


def test_table_scopes_to_the_tenant_and_limit(store_and_table, embedder) -> None:
    _, table = store_and_table
    vector = embedder.embed(["my card was stolen"])[0]
    assert table.search(vector, "acme", None, 3) == []
    assert table.search(vector, "default", ["no_such_intent"], 3) == []
    assert len(table.search(vector, "default", None, 5)) == 5
    assert table.search(vector, "default", None, 0) == []


def _retriever(uri: str, embedder, clock, **overrides) -> Retriever:
    cfg = RetrievalConfig(milvus_uri=uri, redis_url=None, cache_enabled=False, **overrides)
    return Retriever(cfg, embedder=embedder, clock=clock, registry=CollectorRegistry())


async def test_retriever_results_are_the_same_with_the_table_and_with_milvus(
    kb_index, embedder, clock
) -> None:
    with_table = _retriever(kb_index, embedder, clock)
    milvus_only = _retriever(kb_index, embedder, clock, answers_in_memory_max=0)
    too_large = _retriever(kb_index, embedder, clock, answers_in_memory_max=10)  # 77 answers > 10
    try:
        for query in QUERIES:
            for filters in (None, SearchFilters(intent="card_arrival")):
                a = await with_table.search(query, filters)
                b = await milvus_only.search(query, filters)
                c = await too_large.search(query, filters)
                for other in (b, c):
                    assert [h.id for h in a.hits] == [h.id for h in other.hits]
                    assert [h.id for h in a.examples] == [h.id for h in other.examples]
                    assert np.allclose([h.score for h in a.hits], [h.score for h in other.hits], atol=1e-4)
        version = with_table.index_version
        assert with_table._answers is not None and with_table._answers[0] == version
        assert isinstance(with_table._answers[1], AnswerTable)
        assert too_large._answers == (version, None)  # remembered: no re-query per search
        assert milvus_only._answers is None
    finally:
        for r in (with_table, milvus_only, too_large):
            await r.aclose()
