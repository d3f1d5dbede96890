"""Cache keys, the L1 TTL-LRU and the Redis L2 client against a real redis-server."""

from __future__ import annotations

from netutil import free_port

from finserve.serving.retrieval.cache import KEY_PREFIX, RedisCache, TTLCache, cache_key, normalise_query


def test_key_is_a_hash_with_no_query_text() -> None:
    key = cache_key("my card <CREDIT_CARD> never arrived", None, "default", "v1", 3, 10)
    assert key.startswith(KEY_PREFIX)
    digest = key.removeprefix(KEY_PREFIX)
    assert len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
    assert "card" not in key and "CREDIT" not in key


def test_key_ignores_case_and_spacing_only() -> None:
    assert normalise_query("  Where IS\tmy  card ") == "where is my card"
    key = cache_key("Where is my card", None, "default", "v1", 3, 10)
    assert key == cache_key("  where  is my CARD ", None, "default", "v1", 3, 10)
    assert key != cache_key("Where is my card?", None, "default", "v1", 3, 10)


def test_key_changes_with_filters_version_and_sizes() -> None:
    base = ("where is my card", None, "default", "v1", 3, 10)
    key = cache_key(*base)
    variants = [
        ("where is my card", "card_arrival", "default", "v1", 3, 10),
        ("where is my card", None, "acme", "v1", 3, 10),
        ("where is my card", None, "default", "v2", 3, 10),
        ("where is my card", None, "default", "v1", 4, 10),
        ("where is my card", None, "default", "v1", 3, 5),
    ]
    assert len({key, *(cache_key(*v) for v in variants)}) == 6


def test_ttl_lru_evicts_least_recently_used(clock) -> None:
    cache: TTLCache[int] = TTLCache(max_entries=2, ttl_s=60, clock=clock)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c"), len(cache)) == (1, 3, 2)


def test_ttl_lru_expires_entries(clock) -> None:
    cache: TTLCache[str] = TTLCache(max_entries=10, ttl_s=30, clock=clock)
    cache.put("k", "v")
    clock.advance(29.9)
    assert cache.get("k") == "v"
    clock.advance(0.1)
    assert cache.get("k") is None
    assert len(cache) == 0
    cache.put("k", "w")  # a rewrite starts a new lifetime
    clock.advance(29)
    assert cache.get("k") == "w"


async def test_redis_roundtrip_with_ttl(own_redis) -> None:
    import redis

    l2 = RedisCache(own_redis.url, ttl_s=120, timeout_s=1.0, retry_s=5.0)
    try:
        assert (await l2.get("finserve:test:k")).result == "miss"
        assert await l2.put("finserve:test:k", '{"x": 1}')
        lookup = await l2.get("finserve:test:k")
        assert (lookup.result, lookup.value) == ("hit", '{"x": 1}')
    finally:
        await l2.aclose()
    with redis.Redis(port=own_redis.port) as client:
        assert 110_000 < client.pttl("finserve:test:k") <= 120_000


async def test_redis_down_reports_errors_and_backs_off(clock) -> None:
    l2 = RedisCache(f"redis://127.0.0.1:{free_port()}/0", ttl_s=60, timeout_s=0.5, retry_s=5.0, clock=clock)
    try:
        assert (await l2.get("k")).result == "error"
        assert l2.breaker.is_open
        assert not await l2.put("k", "v")  # skipped: the breaker is open
        clock.advance(5.0)
        assert (await l2.get("k")).result == "error"  # the probe fails too
        assert l2.breaker.retry_after() == 5.0
    finally:
        await l2.aclose()
