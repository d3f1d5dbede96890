"""The response cache on a real redis-server: PII-free keys, masked values, lookups counted by tier,
Redis dying costs only the L2 tier."""

from __future__ import annotations

from pathlib import Path

import redis
from netutil import free_port, spawn_redis

from finserve.serving.degrade import ResponseCacheConfig
from finserve.serving.degrade.response_cache import AnswerKey, CachedAnswer, ResponseCache, answer_key


def key_of(text: str, **over: object) -> str:
    fields = dict(
        tenant="default",
        messages=[("user", text)],
        adapter="base@0.0.0",
        index_version="v1",
        max_tokens=24,
        stop=None,
        system_prompt="be brief",
    )
    return answer_key(AnswerKey(**{**fields, **over}))


def test_key_normalises_text_and_separates_what_changes_the_answer() -> None:
    base = key_of("My card <CREDIT_CARD> is lost")
    assert key_of("  my CARD <credit_card>   is lost ") == base
    assert base.startswith("finserve:answer:v1:") and "card" not in base.lower()
    for change in (
        {"adapter": "x@1.0.0"},
        {"index_version": "v2"},
        {"tenant": "t2"},
        {"max_tokens": 8},
        {"stop": ["."]},
        {"system_prompt": "other"},
    ):
        assert key_of("My card <CREDIT_CARD> is lost", **change) != base


async def test_l1_l2_tiers_and_a_dead_redis(tmp_path: Path) -> None:
    port = free_port()
    proc = spawn_redis(port, tmp_path)
    counts: dict[tuple[str, str], int] = {}

    def count(tier: str, result: str) -> None:
        counts[tier, result] = counts.get((tier, result), 0) + 1

    url = f"redis://127.0.0.1:{port}/0"
    # A generous timeout: this checks tiers, not speed (a loaded machine may take 50 ms to connect).
    writer = ResponseCache(ResponseCacheConfig(), url, count=count, l2_timeout_s=5.0)
    reader = ResponseCache(ResponseCacheConfig(), url, count=count, l2_timeout_s=5.0)
    key = key_of("My card <CREDIT_CARD> is lost")
    answer = CachedAnswer(text="Please freeze the card <CREDIT_CARD> in the app.", finish_reason="stop")
    try:
        assert await writer.get(key) is None
        await writer.put(key, answer)
        assert await writer.get(key) == ("l1", answer)
        assert await reader.get(key) == ("l2", answer)  # another replica: from Redis, then its own L1
        assert await reader.get(key) == ("l1", answer)
        with redis.Redis(port=port, decode_responses=True) as r:
            [stored] = r.keys("*")
            assert stored == key and CachedAnswer.model_validate_json(r.get(stored)) == answer
        proc.kill()
        proc.wait(timeout=10)
        assert await reader.get(key_of("something else")) is None  # L1 miss, L2 error: no exception
    finally:
        await writer.aclose()
        await reader.aclose()
        if proc.poll() is None:
            proc.kill()
    assert counts == {
        ("l1", "miss"): 3,
        ("l2", "miss"): 1,
        ("l1", "hit"): 2,
        ("l2", "hit"): 1,
        ("l2", "error"): 1,
    }
