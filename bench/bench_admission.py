"""What a request pays for its rate-limit check: `Admission.admit` (every limit of the default config:
requests and tokens, per principal and per tenant) in memory and on a real local Redis.

    python -m bench.bench_admission --checks 2000

Each check charges a fresh principal (so none is refused) of one of 16 tenants, one at a time: the
latency one request adds, not throughput. The limiter runs on the serving event loop, so it is timed there.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from finserve.serving.admission import Admission, AdmissionConfig

from .common import machine, percentiles, start_redis, write_result


async def _run(config: AdmissionConfig, checks: int, warmup: int) -> dict[str, Any]:
    admission = Admission(config, CollectorRegistry())
    samples: list[float] = []
    for i in range(warmup + checks):
        t0 = time.perf_counter()
        await admission.admit(f"bench-{i}", "10.0.0.1", f"tenant-{i % 16}", 1, 96)
        if i >= warmup:
            samples.append((time.perf_counter() - t0) * 1000)
    errors = admission.limiter.store_errors._value.get()  # noqa: SLF001 - a fail-open would flatter the figure
    return {**percentiles(samples), "store_errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": machine(("limits", "redis")), "checks": args.checks,
                              "limits_per_check": 4, "strategy": AdmissionConfig().rate.strategy}
    result["memory"] = asyncio.run(_run(AdmissionConfig(), args.checks, args.warmup))
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis(Path(tmp))
        try:
            cfg = AdmissionConfig()
            cfg.rate = cfg.rate.model_copy(update={"redis_url": url})
            result["redis"] = asyncio.run(_run(cfg, args.checks, args.warmup))
        finally:
            proc.kill()
            proc.wait()
    print(write_result("admission", result, args.out))
    for store in ("memory", "redis"):
        r = result[store]
        print(f"{store}: p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms (n={r['n']}, store errors {r['store_errors']})")


if __name__ == "__main__":
    main()
