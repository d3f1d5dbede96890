"""The Milvus adapter: filter expressions, unreachable servers, missing collections (real Milvus Lite)."""

from __future__ import annotations

import numpy as np
import pytest
from netutil import free_port

from finserve.serving.retrieval.errors import IndexMissing, VectorStoreUnavailable
from finserve.serving.retrieval.store import MilvusStore, build_name, filter_expression


def test_filter_expression_scopes_tenant_and_optional_intent() -> None:
    assert filter_expression("default", None) == 'tenant == "default"'
    assert filter_expression("acme", ["reverted_card_payment?"]) == (
        'tenant == "acme" and intent == "reverted_card_payment?"'
    )
    assert filter_expression("t", ["a", "b"]) == 'tenant == "t" and intent in ["a", "b"]'
    with pytest.raises(ValueError):
        filter_expression('x" or tenant != "', None)
    with pytest.raises(ValueError):
        filter_expression("t", ["a\\"])


def test_build_names_are_alias_plus_version_prefix() -> None:
    assert build_name("finserve_kb", "ab" * 32) == "finserve_kb_" + "ab" * 8


def test_unreachable_server_is_vector_store_unavailable() -> None:
    store = MilvusStore(f"http://127.0.0.1:{free_port()}", timeout_s=1.0)
    with pytest.raises(VectorStoreUnavailable):
        store.index_info("finserve_kb")


def test_empty_lite_file_has_no_index(tmp_path) -> None:
    store = MilvusStore(str(tmp_path / "milvus.db"), timeout_s=5.0)
    try:
        assert store.index_info("finserve_kb") is None
        with pytest.raises(IndexMissing):
            store.search(
                "finserve_kb", np.ones(384, dtype=np.float32) / 384**0.5, "answer", "default", None, 3
            )
    finally:
        store.close()


def test_search_returns_one_kind_best_first(kb_index, embedder) -> None:
    store = MilvusStore(kb_index, timeout_s=5.0)
    try:
        info = store.index_info("finserve_kb")
        assert info is not None and info.embedder_id == embedder.model_id
        vector = embedder.embed(["I lost my card"])[0]
        answers = store.search("finserve_kb", vector, "answer", "default", None, 5)
        examples = store.search("finserve_kb", vector, "example", "default", None, 5)
    finally:
        store.close()
    assert [h.kind for h in answers] == ["answer"] * 5 and [h.kind for h in examples] == ["example"] * 5
    assert [h.score for h in answers] == sorted((h.score for h in answers), reverse=True)
    assert answers[0].intent == "lost_or_stolen_card" and answers[0].id == "answer:lost_or_stolen_card"
    assert 0 < answers[0].score <= 1.0001
