"""The one-round-trip sliding-window check on a real Redis keeps `limits`' counters: limits' own strategy reads
what it charges and it reads what limits charges; all of a request's limits are charged together or not at all."""

from __future__ import annotations

import uuid

import pytest
from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from finserve.serving.admission.redis_window import RedisSlidingWindows

PREFIX = "finserve-rl-test"


@pytest.fixture
async def stores(redis_server):
    ours = RedisSlidingWindows(redis_server.url, PREFIX, timeout_s=2.0)
    theirs = SlidingWindowCounterRateLimiter(
        RedisStorage("async+" + redis_server.url, implementation="redispy", key_prefix=PREFIX)
    )
    yield ours, theirs
    await ours.aclose()


def _item(limit: int, name: str = "principal-requests") -> RateLimitItemPerMinute:
    return RateLimitItemPerMinute(limit, namespace=name)


async def test_limits_reads_what_one_round_trip_charged_and_the_other_way_round(stores) -> None:
    ours, theirs = stores
    item, who = _item(10), uuid.uuid4().hex
    charged, before = await ours.check_and_charge([(item, who, 3)])
    assert charged and before[0].remaining == 10
    assert (await theirs.get_window_stats(item, who)).remaining == 7
    assert await theirs.hit(item, who, cost=2)
    charged, before = await ours.check_and_charge([(item, who, 1)])
    assert charged and before[0].remaining == 5  # 10 - 3 (ours) - 2 (limits')
    assert (await theirs.get_window_stats(item, who)).remaining == 4
    assert 0 < before[0].reset_in_s <= 60


async def test_one_full_limit_charges_none_of_the_others(stores) -> None:
    ours, theirs = stores
    requests, tokens, who = _item(100), _item(50, "tenant-tokens"), uuid.uuid4().hex
    assert (await ours.check_and_charge([(requests, who, 1), (tokens, who, 40)]))[0]
    charged, before = await ours.check_and_charge([(requests, who, 1), (tokens, who, 40)])
    assert not charged
    assert [w.remaining for w in before] == [99, 10]  # the tokens limit is the one without room
    assert (await theirs.get_window_stats(requests, who)).remaining == 99  # not charged for the refused one
    assert (await theirs.get_window_stats(tokens, who)).remaining == 10
    assert (await ours.check_and_charge([(requests, who, 1), (tokens, who, 10)]))[
        0
    ]  # what is left still fits


async def test_a_cost_above_the_limit_is_refused_and_a_fresh_limit_has_no_reset(stores) -> None:
    ours, _ = stores
    item, who = _item(5), uuid.uuid4().hex
    charged, before = await ours.check_and_charge([(item, who, 6)])
    assert not charged and before[0].remaining == 5 and before[0].reset_in_s == 0.0
