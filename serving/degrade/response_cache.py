"""Answers of deterministic requests in an L1 TTL-LRU and Redis (L2), so a repeated question is answered
while the generator is down.

Keys hash masked, normalised text only (``finserve:answer:v1:<sha256>``); values are the guarded answer
(masked) with its finish reason and token counts. Redis failures cost only the L2 tier (its breaker skips it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import NamedTuple

from pydantic import Field, ValidationError

from finserve.contracts import StrictModel

from ..retrieval.cache import RedisCache, TTLCache, normalise_query
from .config import ResponseCacheConfig

KEY_PREFIX = "finserve:answer:v1:"
Count = Callable[[str, str], None]  # (tier, result) -> counted


class CachedAnswer(StrictModel):
    """What is kept of a finished answer: the text after the output guard, never the raw generation."""

    text: str = Field(description="The answer as the client received it (masked by the output guard).")
    finish_reason: str = Field(description="stop or length.")
    prompt_tokens: int = Field(0, ge=0, description="Prompt tokens of the generation that produced it.")
    completion_tokens: int = Field(0, ge=0, description="Tokens that generation produced.")


class AnswerKey(NamedTuple):
    """Everything that changes a greedy answer (the messages are masked already)."""

    tenant: str
    messages: Sequence[tuple[str, str]]
    adapter: str
    index_version: str | None
    max_tokens: int
    stop: Sequence[str] | None
    system_prompt: str


def deterministic(temperature: float) -> bool:
    """Only greedy decoding gives the same answer twice; sampled answers are never cached."""
    return temperature == 0


def answer_key(k: AnswerKey) -> str:
    material = json.dumps(
        [
            k.tenant,
            [(role, normalise_query(text)) for role, text in k.messages],
            k.adapter,
            k.index_version,
            k.max_tokens,
            list(k.stop or ()),
            hashlib.sha256(k.system_prompt.encode()).hexdigest(),
        ]
    )
    return KEY_PREFIX + hashlib.sha256(material.encode()).hexdigest()


class ResponseCache:
    """L1 then L2 lookups; every lookup counted by tier and result (hit|miss|error)."""

    def __init__(
        self,
        config: ResponseCacheConfig,
        redis_url: str | None,
        *,
        count: Count,
        l2_timeout_s: float = 0.1,
        l2_retry_s: float = 5.0,
    ) -> None:
        self.config = config
        self._count = count
        self._l1: TTLCache[CachedAnswer] | None = (
            TTLCache(config.l1_max_entries, config.l1_ttl_s) if config.l1_max_entries else None
        )
        self._l2: RedisCache | None = (
            RedisCache(redis_url, config.l2_ttl_s, l2_timeout_s, l2_retry_s) if redis_url else None
        )

    async def get(self, key: str) -> tuple[str, CachedAnswer] | None:
        """(tier, answer) of a hit, or None."""
        if self._l1 is not None:
            found = self._l1.get(key)
            self._count("l1", "hit" if found is not None else "miss")
            if found is not None:
                return "l1", found
        if self._l2 is None:
            return None
        lookup = await self._l2.get(key)
        if lookup.result != "hit" or lookup.value is None:
            self._count("l2", lookup.result)
            return None
        try:
            answer = CachedAnswer.model_validate_json(lookup.value)
        except ValidationError:
            self._count("l2", "error")  # written by an incompatible version
            return None
        self._count("l2", "hit")
        if self._l1 is not None:
            self._l1.put(key, answer)
        return "l2", answer

    async def put(self, key: str, answer: CachedAnswer) -> None:
        if self._l1 is not None:
            self._l1.put(key, answer)
        if self._l2 is not None:
            await self._l2.put(key, answer.model_dump_json())

    async def aclose(self) -> None:
        if self._l2 is not None:
            await self._l2.aclose()
