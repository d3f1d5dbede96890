"""All of one request's sliding-window limits checked and charged in one Redis round trip.

`limits` checks one limit per call, so a request's four limits (requests and tokens, per principal and per
tenant) cost two or three round trips of four script calls each: about 1 ms of Python and network on every
request (docs/benchmarks.md#admission-rate-limit-check). This script does them at once, atomically: every
limit is charged only if every limit has room, so a refused request charges nothing, even under a race.

It keeps `limits`' sliding-window counter exactly: the same keys (``{key}`` and ``{key}/-1`` under the
storage's prefix), the same window shift and the same weighted count, so `limits`' own strategy reads the
counters this writes (tests/serving/admission/test_redis_window.py holds the two together).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from limits import RateLimitItem

# KEYS: previous and current window key of each limit. ARGV: limit, expiry (s) and amount of each limit.
# Returns {charged (0/1), then per limit: previous count, previous TTL (ms), current count, current TTL (ms)},
# the window as it was before the charge. The shift and weighting are limits' acquire_sliding_window.lua.
CHECK_AND_CHARGE = """
local n = #KEYS / 2
local out = {0}
local room = true
for i = 1, n do
  local previous, current = KEYS[2 * i - 1], KEYS[2 * i]
  local limit = tonumber(ARGV[3 * i - 2])
  local expiry = tonumber(ARGV[3 * i - 1]) * 1000
  local amount = tonumber(ARGV[3 * i])
  local current_ttl = tonumber(redis.call('pttl', current))
  if current_ttl > 0 and current_ttl < expiry then
    redis.call('rename', current, previous)
    redis.call('set', current, 0, 'PX', current_ttl + expiry)
  end
  local previous_count = tonumber(redis.call('get', previous)) or 0
  local previous_ttl = math.max(tonumber(redis.call('pttl', previous)), 0)
  local current_count = tonumber(redis.call('get', current)) or 0
  current_ttl = math.max(tonumber(redis.call('pttl', current)), 0)
  local weighted = math.floor(previous_count * previous_ttl / expiry) + current_count
  if amount > limit or weighted + amount > limit then
    room = false
  end
  table.insert(out, previous_count)
  table.insert(out, previous_ttl)
  table.insert(out, current_count)
  table.insert(out, current_ttl)
end
if room then
  for i = 1, n do
    local current = KEYS[2 * i]
    local amount = tonumber(ARGV[3 * i])
    if redis.call('exists', current) == 1 then
      redis.call('incrby', current, amount)
    else
      redis.call('set', current, amount, 'PX', tonumber(ARGV[3 * i - 1]) * 2000)
    end
  end
  out[1] = 1
end
return out
"""


@dataclass(frozen=True)
class Window:
    """One limit's sliding window before this request: what limits' get_window_stats computes from."""

    limit: int
    expiry_s: int
    previous_count: int
    previous_ttl_s: float
    current_count: int
    current_ttl_s: float

    @property
    def remaining(self) -> int:
        """limits' SlidingWindowCounterRateLimiter.get_window_stats(...).remaining, before the charge."""
        weighted = self.previous_count * self.previous_ttl_s / self.expiry_s + self.current_count
        return max(0, self.limit - math.floor(weighted))

    @property
    def reset_in_s(self) -> float:
        """Seconds until a unit of the limit frees up (limits' reset time, relative)."""
        if not (self.previous_count or self.current_count):
            return 0.0
        previous, current = math.inf, math.inf
        if self.previous_count:
            previous = self.previous_ttl_s % (self.expiry_s / self.previous_count)
        if self.current_count:
            current = self.current_ttl_s % self.expiry_s
        return min(previous, current)


class RedisSlidingWindows:
    """Checks and charges several limits at once on Redis (one EVALSHA; NOSCRIPT reloads it once)."""

    def __init__(self, url: str, key_prefix: str, timeout_s: float) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._script = self._client.register_script(CHECK_AND_CHARGE)
        self._prefix = key_prefix

    def keys(self, item: RateLimitItem, identifier: str) -> list[str]:
        """limits' keys of this limit's previous and current window (RedisStorage's sliding-window keys)."""
        current = f"{self._prefix}:{{{item.key_for(identifier)}}}"
        return [f"{current}/-1", current]

    async def check_and_charge(
        self, limits: list[tuple[RateLimitItem, str, int]]
    ) -> tuple[bool, list[Window]]:
        """(item, identifier, cost) of each limit -> whether all were charged, and each window before it."""
        keys: list[str] = []
        args: list[Any] = []
        for item, identifier, cost in limits:
            keys += self.keys(item, identifier)
            args += [item.amount, item.get_expiry(), cost]
        out = await self._script(keys=keys, args=args)
        windows = [
            Window(
                item.amount,
                item.get_expiry(),
                int(out[1 + 4 * i]),
                int(out[2 + 4 * i]) / 1000,
                int(out[3 + 4 * i]),
                int(out[4 + 4 * i]) / 1000,
            )
            for i, (item, _, _) in enumerate(limits)
        ]
        return bool(out[0]), windows

    async def aclose(self) -> None:
        await self._client.aclose()
