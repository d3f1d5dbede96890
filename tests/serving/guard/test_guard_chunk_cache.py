"""The context-chunk cache returns exactly what the guard returns, scanning each text once."""

from __future__ import annotations

from finserve.serving.guard.chunk_cache import ChunkGuardCache
from finserve.serving.guard.config import GuardConfig
from finserve.serving.guard.engine import PIIGuard


def test_cached_results_equal_fresh_scans_and_each_text_is_scanned_once():
    guard = PIIGuard(GuardConfig())
    calls: list[list[str]] = []

    def counting(texts: list[str]):
        calls.append(list(texts))
        return guard.scan_many(texts)

    cache = ChunkGuardCache(counting, max_entries=2)
    texts = ["Call us on +44 20 7946 0958 any time.", "Cards arrive in 5 working days."]
    first = cache.scan_chunks(texts)
    second = cache.scan_chunks(list(reversed(texts)))
    assert first == guard.scan_many(texts)
    assert second == list(reversed(first))
    assert calls == [texts]
    assert "7946" not in first[0].text


def test_eviction_keeps_the_most_recent():
    guard = PIIGuard(GuardConfig())
    seen: list[str] = []

    def counting(texts: list[str]):
        seen.extend(texts)
        return guard.scan_many(texts)

    cache = ChunkGuardCache(counting, max_entries=2)
    for t in ("a", "b", "c", "a"):
        cache.scan_chunks([t])
    assert seen == ["a", "b", "c", "a"]
