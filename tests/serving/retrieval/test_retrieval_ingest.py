"""Ingest into real Milvus Lite: counts, skip when current, rebuild on change, alias swap, old builds gone."""

from __future__ import annotations

import pytest
import yaml

from finserve.serving.retrieval import RetrievalConfig, index_exists, ingest
from finserve.serving.retrieval.config import default_answers_path
from finserve.serving.retrieval.kb import load_off_topic
from finserve.serving.retrieval.store import MilvusStore


def _collections(uri: str) -> list[str]:
    store = MilvusStore(uri, timeout_s=5.0)
    try:
        return sorted(store._call("list", lambda c: c.list_collections()))
    finally:
        store.close()


def test_ingest_builds_skips_when_current_and_rebuilds_on_change(tmp_path, embedder, kb_rows) -> None:
    config = RetrievalConfig(milvus_uri=str(tmp_path / "milvus.db"), redis_url=None)
    assert not index_exists(config)

    first = ingest(config, rows=kb_rows, progress=False, embedder=embedder)
    off_topic = len(load_off_topic())  # the shipped off-topic questions are indexed as examples too
    assert (first.answers, first.examples, first.off_topic, first.skipped) == (
        77,
        50 + off_topic,
        off_topic,
        False,
    )
    assert index_exists(config)
    assert _collections(config.milvus_uri) == [first.collection]

    again = ingest(config, rows=kb_rows, progress=False, embedder=embedder)
    assert again.skipped and again.index_version == first.index_version

    forced = ingest(config, rows=kb_rows, progress=False, embedder=embedder, force=True)
    assert not forced.skipped and forced.index_version == first.index_version

    answers = yaml.safe_load(default_answers_path().read_text())
    answers["card_arrival"] = "Cards arrive by post within five working days. Track the delivery in the app."
    edited = tmp_path / "answers.yaml"
    edited.write_text(yaml.safe_dump(answers))
    changed = ingest(config, rows=kb_rows, answers_path=edited, progress=False, embedder=embedder)
    assert changed.index_version != first.index_version and not changed.skipped
    # The alias moved to the new build and the old build is gone.
    assert _collections(config.milvus_uri) == [changed.collection]
    store = MilvusStore(config.milvus_uri, timeout_s=5.0)
    try:
        info = store.index_info(config.collection)
    finally:
        store.close()
    assert info is not None and (info.version, info.collection) == (changed.index_version, changed.collection)


def test_held_out_rows_are_not_indexed(tmp_path, embedder, kb_rows) -> None:
    config = RetrievalConfig(milvus_uri=str(tmp_path / "milvus.db"), redis_url=None, off_topic_path="")
    held_out = kb_rows[0]
    ingest(config, rows=kb_rows[1:], progress=False, embedder=embedder)
    store = MilvusStore(config.milvus_uri, timeout_s=5.0)
    try:
        assert store.index_info(config.collection) is not None  # also loads the reopened collection
        vector = embedder.embed([held_out[0]])[0]
        nearest = store.search(config.collection, vector, "example", "default", None, 50)
    finally:
        store.close()
    assert len(nearest) == 49
    assert held_out[0] not in {h.text for h in nearest}


def test_rows_with_an_intent_lacking_an_answer_are_rejected(tmp_path, embedder) -> None:
    config = RetrievalConfig(milvus_uri=str(tmp_path / "milvus.db"), redis_url=None)
    with pytest.raises(ValueError, match="no answer text"):
        ingest(config, rows=[("hello", "not_an_intent")], progress=False, embedder=embedder)
    assert not index_exists(config)
