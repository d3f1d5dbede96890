"""The intent head files: spec, weights, labels, with and without the query-embedding input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from finserve.serving.intent.head import HeadSpec, IntentHead, QueryEmbedding, load_head, save_head

LABELS = ["a", "b", "c"]


def spec(query: QueryEmbedding | None = None, pooling: str = "mean") -> HeadSpec:
    return HeadSpec(
        base_model="m",
        hidden_size=4,
        exit_layer=2,
        lora_layers=[1],
        pooling=pooling,
        max_length=8,
        retrieval_weight=0.5,
        vote_temperature=0.05,
        query_embedding=query,
    )


def test_features_count_the_query_embedding_width() -> None:
    assert spec().features == 4
    assert spec(pooling="mean_last").features == 8
    assert spec(QueryEmbedding(embedder="e-1", dim=3, scale=2.0), pooling="mean_last").features == 11


def test_head_appends_the_scaled_query_vector() -> None:
    torch.manual_seed(0)
    head = IntentHead(4 + 3, len(LABELS), query_scale=2.0).eval()
    pooled, query = torch.randn(2, 4), torch.randn(2, 3)
    want = head.linear(torch.cat([pooled, 2.0 * query], dim=-1))
    assert torch.allclose(head(pooled, query), want)


def test_head_refuses_a_missing_or_unexpected_query_vector() -> None:
    with_query = IntentHead(4 + 3, len(LABELS))
    with pytest.raises(ValueError, match="reads 7 features, got 4"):
        with_query(torch.randn(1, 4))
    without = IntentHead(4, len(LABELS))
    with pytest.raises(ValueError, match="reads 4 features, got 7"):
        without(torch.randn(1, 4), torch.randn(1, 3))


def test_save_and_load_keep_the_query_spec_and_the_outputs(tmp_path: Path) -> None:
    torch.manual_seed(1)
    query_spec = QueryEmbedding(embedder="all-MiniLM-L6-v2-0123", dim=3, scale=20.0)
    head = IntentHead(spec(query_spec).features, len(LABELS), query_scale=20.0).eval()
    save_head(tmp_path, spec(query_spec), head, LABELS)
    loaded_spec, loaded, labels = load_head(tmp_path)
    assert loaded_spec.query_embedding == query_spec and labels == LABELS
    pooled, query = torch.randn(2, 4), torch.randn(2, 3)
    assert torch.allclose(loaded(pooled, query), head(pooled, query))


def test_a_spec_without_query_embedding_still_loads(tmp_path: Path) -> None:
    """Heads published before the query input existed (banking77 1.0.0-1.2.0) load unchanged."""
    head = IntentHead(4, len(LABELS)).eval()
    save_head(tmp_path, spec(), head, LABELS)
    text = (tmp_path / "intent_head.json").read_text()
    (tmp_path / "intent_head.json").write_text(
        text.replace('  "query_embedding": null,\n', "").replace(',\n  "query_embedding": null', "")
    )
    assert "query_embedding" not in (tmp_path / "intent_head.json").read_text()
    loaded_spec, loaded, _ = load_head(tmp_path)
    assert loaded_spec.query_embedding is None and loaded.linear.in_features == 4
