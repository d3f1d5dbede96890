"""The Retriever end to end on real parts: MiniLM, Milvus Lite, redis-server."""

from __future__ import annotations

import pytest
import yaml
from netutil import free_port
from prometheus_client import CollectorRegistry

from finserve.serving.retrieval import (
    IndexMissing,
    RetrievalConfig,
    Retriever,
    SearchFilters,
    VectorStoreUnavailable,
    ingest,
)
from finserve.serving.retrieval.config import default_answers_path

CLEAR_QUERIES = {
    "How do I activate my new card?": "activate_my_card",
    "Someone stole my card, what should I do?": "lost_or_stolen_card",
    "My PIN is blocked after too many attempts": "pin_blocked",
    "What exchange rate do you use when I pay in dollars?": "exchange_rate",
    "It has been two weeks and my card still hasn't arrived": "card_arrival",
}


def lookups(registry: CollectorRegistry, tier: str, result: str) -> float:
    return registry.get_sample_value("finserve_cache_lookups_total", {"tier": tier, "result": result}) or 0.0


def make(uri: str, embedder, clock, registry=None, **overrides) -> Retriever:
    config = RetrievalConfig(**{"milvus_uri": uri, "redis_url": None, **overrides})
    return Retriever(config, embedder=embedder, clock=clock, registry=registry or CollectorRegistry())


@pytest.mark.parametrize(("query", "intent"), list(CLEAR_QUERIES.items()))
async def test_clear_queries_find_their_intents_answer(kb_index, embedder, clock, query, intent) -> None:
    retriever = make(kb_index, embedder, clock)
    try:
        result = await retriever.search(query)
    finally:
        await retriever.aclose()
    assert result.hits[0].intent == intent and result.hits[0].kind == "answer"
    assert len(result.hits) == 3 and len(result.examples) == 10
    assert {h.kind for h in result.examples} == {"example"}
    # The nearest examples vote for the same intent.
    assert [h.intent for h in result.examples[:3]].count(intent) >= 2
    assert result.cache == "miss" and len(result.index_version) == 64


async def test_intent_and_tenant_filters(kb_index, embedder, clock) -> None:
    retriever = make(kb_index, embedder, clock)
    try:
        only_pin = await retriever.search("my card was stolen", SearchFilters(intent="pin_blocked"))
        other_tenant = await retriever.search("my card was stolen", SearchFilters(tenant="acme"))
    finally:
        await retriever.aclose()
    assert [h.intent for h in only_pin.hits] == ["pin_blocked"]
    assert {h.intent for h in only_pin.examples} == {"pin_blocked"} and len(only_pin.examples) == 10
    assert other_tenant.hits == [] and other_tenant.examples == []


def test_filters_reject_values_that_could_alter_the_expression() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        SearchFilters(intent='x" or intent != "')


async def test_l1_serves_a_repeat_and_counts_it(kb_index, embedder, clock) -> None:
    registry = CollectorRegistry()
    retriever = make(kb_index, embedder, clock, registry)
    try:
        first = await retriever.search("How do I activate my card?")
        second = await retriever.search("how do I   ACTIVATE my card?")
        clock.advance(retriever.config.l1_ttl_s)  # expired: searched again
        third = await retriever.search("How do I activate my card?")
    finally:
        await retriever.aclose()
    assert (first.cache, second.cache, third.cache) == ("miss", "l1", "miss")
    assert second.hits == first.hits and second.examples == first.examples
    assert (lookups(registry, "l1", "hit"), lookups(registry, "l1", "miss")) == (1, 2)


async def test_cache_disabled_is_off(kb_index, embedder, clock) -> None:
    retriever = make(kb_index, embedder, clock, cache_enabled=False)
    try:
        results = [await retriever.search("How do I activate my card?") for _ in range(2)]
    finally:
        await retriever.aclose()
    assert [r.cache for r in results] == ["off", "off"]


async def test_l2_serves_a_fresh_retriever_and_stores_no_query_text(
    kb_index, embedder, clock, own_redis
) -> None:
    registry = CollectorRegistry()
    query = "I think my card <CREDIT_CARD> was stolen yesterday"
    writer = make(kb_index, embedder, clock, registry, redis_url=own_redis.url)
    try:
        written = await writer.search(query)
    finally:
        await writer.aclose()
    reader = make(kb_index, embedder, clock, registry, redis_url=own_redis.url)
    try:
        from_l2 = await reader.search(query)
        from_l1 = await reader.search(query)
    finally:
        await reader.aclose()
    assert (written.cache, from_l2.cache, from_l1.cache) == ("miss", "l2", "l1")
    assert from_l2.hits == written.hits and from_l2.index_version == written.index_version
    assert (lookups(registry, "l2", "miss"), lookups(registry, "l2", "hit")) == (1, 1)
    keys, values = own_redis.keys(), own_redis.values()
    assert len(keys) == 1 and keys[0].startswith("finserve:retrieval:v1:")
    for stored in keys + values:
        assert "stolen yesterday" not in stored.lower() and "CREDIT_CARD" not in stored


async def test_redis_dying_mid_test_keeps_serving_and_counts_errors(
    kb_index, embedder, clock, own_redis
) -> None:
    registry = CollectorRegistry()
    retriever = make(kb_index, embedder, clock, registry, redis_url=own_redis.url, l2_retry_s=5.0)
    try:
        assert (await retriever.search("How do I activate my card?")).cache == "miss"
        own_redis.kill()
        after_kill = await retriever.search("My PIN is blocked")
        while_open = await retriever.search("Someone stole my card")
        assert (after_kill.cache, while_open.cache) == ("miss", "miss")
        assert after_kill.hits[0].intent == "pin_blocked"
        assert lookups(registry, "l2", "error") == 2  # one failed call, one skipped by the open breaker

        own_redis.start()  # back on the same port; the breaker probes once its window has passed
        clock.advance(5.0)
        recovered = await retriever.search("What exchange rate do you use?")
        assert recovered.cache == "miss" and lookups(registry, "l2", "error") == 2
        assert lookups(registry, "l2", "miss") == 2 and len(own_redis.keys()) == 1
    finally:
        await retriever.aclose()


async def test_unreachable_milvus_raises_and_fails_fast(embedder, clock) -> None:
    retriever = make(
        f"http://127.0.0.1:{free_port()}", embedder, clock, milvus_retry_s=3.0, milvus_timeout_s=1.0
    )
    try:
        assert not retriever.ready()
        with pytest.raises(VectorStoreUnavailable) as first:
            await retriever.search("How do I activate my card?")
        assert not isinstance(first.value, IndexMissing)
        clock.advance(1.0)
        with pytest.raises(VectorStoreUnavailable) as fast:
            await retriever.search("How do I activate my card?")
        assert fast.value.retry_after_s == pytest.approx(2.0)  # the breaker's remaining window
    finally:
        await retriever.aclose()


async def test_missing_index_is_index_missing(tmp_path, embedder, clock) -> None:
    retriever = make(str(tmp_path / "milvus.db"), embedder, clock)
    try:
        assert not retriever.ready()
        with pytest.raises(IndexMissing, match="finserve ingest"):
            await retriever.search("How do I activate my card?")
    finally:
        await retriever.aclose()


async def test_reingest_moves_results_to_the_new_version(tmp_path, embedder, clock, kb_rows) -> None:
    uri = str(tmp_path / "milvus.db")
    config = RetrievalConfig(milvus_uri=uri, redis_url=None)
    ingest(config, rows=kb_rows, progress=False, embedder=embedder)
    retriever = make(uri, embedder, clock, index_refresh_s=30.0)
    try:
        before = await retriever.search("How do I activate my card?")
        answers = yaml.safe_load(default_answers_path().read_text())
        answers["activate_my_card"] = "Open the app and tap Activate on the card. Then set your PIN."
        edited = tmp_path / "answers.yaml"
        edited.write_text(yaml.safe_dump(answers))
        report = ingest(config, rows=kb_rows, answers_path=edited, progress=False, embedder=embedder)
        clock.advance(30.0)
        after = await retriever.search("How do I activate my card?")
    finally:
        await retriever.aclose()
    assert report.index_version != before.index_version
    assert after.index_version == report.index_version and after.cache == "miss"
    assert after.hits[0].text == answers["activate_my_card"]


async def test_index_from_another_embedder_is_refused(kb_index, tmp_path, clock) -> None:
    """A copy of MiniLM with one extra file has another fingerprint: its vectors must not query this index."""
    import shutil

    from finserve.serving.retrieval import Embedder
    from finserve.serving.retrieval.embedder import default_model_path

    copy = tmp_path / "minilm-copy"
    shutil.copytree(default_model_path(), copy)
    (copy / "NOTE.txt").write_text("a different build")
    other = Embedder(copy, threads=1, backend="torch")
    retriever = make(kb_index, other, clock)
    try:
        with pytest.raises(IndexMissing, match="built with embedder"):
            await retriever.search("How do I activate my card?")
    finally:
        await retriever.aclose()
