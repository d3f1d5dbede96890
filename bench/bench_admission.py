"""What a request pays for its rate-limit check: `Admission.admit` (every limit of the default config:
requests and tokens, per principal and per tenant) in memory and on a real local Redis, beside the previous
three-round check and the floor, a bare Redis PING round trip, all measured in the same run.

    python -m bench.bench_admission --checks 2000

Each check charges a fresh principal (so none is refused) of one of 16 tenants, one at a time: the
latency one request adds, not throughput. The limiter runs on the serving event loop, so it is timed there.
The variants take turns in blocks of 100 checks, so a busy moment of a shared machine hits each alike.

- ``admit``: what serving runs. On Redis one round trip: a script checks and charges the 4 limits at once
  (serving/admission/redis_window.py); in memory `limits`' strategy in two rounds of 4 calls (``two_rounds``).
- ``two_rounds``: `limits`' strategy, the window stats of the 4 limits (room and headers), then the 4 charges
  (what the other strategies use on Redis).
- ``three_rounds``: the check before this change (test, hit, then window stats: three rounds of 4 calls),
  on the same limiter and store.
- ``ping``: one PING on one open connection of the same client library (redis only).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from finserve.serving.admission import Admission, AdmissionConfig, limit_key
from finserve.serving.admission.ratelimit import plan

from .common import machine, percentiles, start_redis, write_result

BLOCK = 100


def _admit(admission: Admission) -> Callable[[int], Awaitable[Any]]:
    async def one(i: int) -> Any:
        return await admission.admit(f"bench-{i}", "10.0.0.1", f"tenant-{i % 16}", 1, 96)

    return one


def _two_rounds(admission: Admission) -> Callable[[int], Awaitable[Any]]:
    limiter = admission.limiter

    async def one(i: int) -> Any:
        checks = plan(limiter.config, limit_key(f"bench2-{i}", "10.0.0.1"), f"tenant2-{i % 16}", 1, 96)
        decision = await limiter._check_in_rounds(checks)  # noqa: SLF001 - the limits-only path, timed alone
        assert decision.allowed
        return decision.headers()

    return one


def _three_rounds(admission: Admission) -> Callable[[int], Awaitable[Any]]:
    limiter = admission.limiter

    async def one(i: int) -> Any:
        checks = plan(limiter.config, limit_key(f"bench3-{i}", "10.0.0.1"), f"tenant3-{i % 16}", 1, 96)
        strategy = limiter._strategy()  # noqa: SLF001 - the same store and strategy serving uses
        room = await asyncio.gather(*(strategy.test(c.item, c.key, cost=c.cost) for c in checks))
        assert all(room)
        await asyncio.gather(*(strategy.hit(c.item, c.key, cost=c.cost) for c in checks))
        return await asyncio.gather(*(strategy.get_window_stats(c.item, c.key) for c in checks))

    return one


def _ping(url: str) -> tuple[Callable[[int], Awaitable[Any]], Callable[[], Awaitable[None]]]:
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)

    async def one(_: int) -> Any:
        return await client.ping()

    return one, client.aclose


async def _run(config: AdmissionConfig, checks: int, warmup: int, url: str | None) -> dict[str, Any]:
    admission = Admission(config, CollectorRegistry())
    variants: dict[str, Callable[[int], Awaitable[Any]]] = {
        "admit": _admit(admission),
        "two_rounds": _two_rounds(admission),
        "three_rounds": _three_rounds(admission),
    }
    close = None
    if url:
        variants["ping"], close = _ping(url)
    else:
        del variants["two_rounds"]  # in memory `admit` is the two rounds
    samples: dict[str, list[float]] = {name: [] for name in variants}
    counter = itertools.count()
    for _name, call in variants.items():  # warm connections, scripts and caches
        for _ in range(warmup):
            await call(next(counter))
    for _block in range(max(1, checks // BLOCK)):
        for name, call in variants.items():
            for _ in range(BLOCK):
                i = next(counter)
                t0 = time.perf_counter()
                await call(i)
                samples[name].append((time.perf_counter() - t0) * 1000)
    if close is not None:
        await close()
    errors = admission.limiter.store_errors._value.get()  # noqa: SLF001 - a fail-open would flatter the figure
    out: dict[str, Any] = {name: percentiles(s) for name, s in samples.items()}
    out["store_errors"] = errors
    for q in ("p50_ms", "p95_ms"):
        out[f"admit_over_three_rounds_{q.removesuffix('_ms')}"] = round(
            out["admit"][q] / out["three_rounds"][q], 2
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result: dict[str, Any] = {
        "machine": machine(("limits", "redis")),
        "checks": args.checks,
        "limits_per_check": 4,
        "strategy": AdmissionConfig().rate.strategy,
    }
    result["memory"] = asyncio.run(_run(AdmissionConfig(), args.checks, args.warmup, None))
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis(Path(tmp))
        try:
            cfg = AdmissionConfig()
            cfg.rate = cfg.rate.model_copy(update={"redis_url": url})
            result["redis"] = asyncio.run(_run(cfg, args.checks, args.warmup, url))
        finally:
            proc.kill()
            proc.wait()
    print(write_result("admission", result, args.out))
    for store in ("memory", "redis"):
        r = result[store]
        for name in ("admit", "two_rounds", "three_rounds", "ping"):
            if name in r:
                print(
                    f"{store} {name}: p50 {r[name]['p50_ms']} ms, p95 {r[name]['p95_ms']} ms (n={r[name]['n']})"
                )
        print(
            f"{store} admit / three_rounds: p50 x{r['admit_over_three_rounds_p50']}, "
            f"p95 x{r['admit_over_three_rounds_p95']} (store errors {r['store_errors']})"
        )


if __name__ == "__main__":
    main()
