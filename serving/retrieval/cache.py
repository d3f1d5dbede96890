"""Result caches: cache keys, an in-process TTL-LRU (L1) and a Redis client that never blocks serving (L2).

Only masked text reaches here, and only as a sha256 inside the key; values are knowledge-base documents.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Literal, NamedTuple, TypeVar

from ..breaker import CircuitBreaker

V = TypeVar("V")
KEY_PREFIX = "finserve:retrieval:v1:"
LookupResult = Literal["hit", "miss", "error"]


def normalise_query(text: str) -> str:
    """Lower-case with whitespace collapsed: the embedder (an uncased BERT tokenizer) can't tell these apart,
    so neither should the cache."""
    return " ".join(text.lower().split())


def cache_key(
    masked_query: str, intent: str | None, tenant: str, index_version: str, top_k: int, example_k: int
) -> str:
    """``finserve:retrieval:v1:<sha256>`` over everything that changes the result."""
    material = json.dumps([normalise_query(masked_query), intent, tenant, index_version, top_k, example_k])
    return KEY_PREFIX + hashlib.sha256(material.encode()).hexdigest()


class TTLCache(Generic[V]):
    """Least-recently-used map whose entries also expire ``ttl_s`` after being written. Not thread-safe."""

    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._data: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, key: str) -> V | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: str, value: V) -> None:
        self._data[key] = (self._clock() + self.ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class Lookup(NamedTuple):
    result: LookupResult
    value: str | None = None


class RedisCache:
    """String values in Redis with a TTL. Errors never propagate: a failed call reports ``error`` and
    opens a circuit breaker, so while Redis is down requests skip it instead of each paying a timeout."""

    def __init__(
        self,
        url: str,
        ttl_s: float,
        timeout_s: float,
        retry_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.breaker = CircuitBreaker(retry_s, clock)
        # No client-side retries: the breaker decides when to try again.
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )

    async def get(self, key: str) -> Lookup:
        if not self.breaker.allow():
            return Lookup("error")
        try:
            async with asyncio.timeout(self.timeout_s):
                value = await self._client.get(key)
        except Exception:
            self.breaker.record_failure()
            return Lookup("error")
        self.breaker.record_success()
        return Lookup("miss") if value is None else Lookup("hit", value)

    async def put(self, key: str, value: str) -> bool:
        """Store with the TTL; False when Redis is down (the breaker is open or the call failed)."""
        if not self.breaker.allow():
            return False
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._client.set(key, value, px=int(self.ttl_s * 1000))
        except Exception:
            self.breaker.record_failure()
            return False
        self.breaker.record_success()
        return True

    async def aclose(self) -> None:
        await self._client.aclose()
