"""The whole guarded pipeline on Ray Serve, measured over HTTP the way a client sees it.

Starts `finserve up` (embedded defaults, the full Banking77 index under FINSERVE_DATA_DIR, which
`finserve ingest` builds) and measures:
  1. pipeline overhead at concurrency 1 on cache misses: each query is new, so retrieval embeds
     and searches Milvus. Two figures: ``overhead`` = the gateway's total minus its generate stage
     (three guard passes, retrieval, intent, routing, the hops the gateway makes); ``client_overhead``
     = what the client waits for minus the generate stage, which adds the HTTP proxy's hop, response
     encoding and the audit append (it runs after the gateway's `total` is taken). The audit append's
     own mean comes from the gateway's stage histogram (/metrics);
  2. the same queries again: L1 cache hits;
  3. requests/s and latency at concurrency 1, 4 and 16 (max_tokens 16), and tokens/s.

    python -m bench.bench_pipeline [--queries 60] [--max-tokens 16] [--levels 1,4,16] [--out PATH]
                                   [--set deployments.ingress=haproxy ...] [--env NAME=VALUE ...]

``--levels ""`` skips step 3 (a quick overhead-only run). ``--set`` overrides a ServingConfig field and
``--env`` sets a variable for the stack's processes: run two variants back to back to compare them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.common import machine, percentiles, write_result

PACKAGES = ("ray", "torch", "transformers", "presidio-analyzer", "pymilvus", "milvus-lite", "onnxruntime")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def validation_queries(n: int) -> list[str]:
    from finserve.serving.paths import banking77_csv
    from finserve.serving.retrieval import default_split, read_banking77

    _, val = default_split(read_banking77(banking77_csv()))
    return [text for text, _ in val[:n]]


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``a.b.c=value`` into a nested dict (the YAML the stack reads); the config's own validation judges it."""
    *parents, leaf = dotted.split(".")
    for key in parents:
        data = data.setdefault(key, {})
    data[leaf] = value


def start_stack(
    port: int,
    workdir: Path,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    metrics_port: int | None = None,
) -> subprocess.Popen:
    from finserve.serving.config import ServingConfig, load_serving_config

    cfg = load_serving_config(None)
    cfg.gateway.http_port = port
    cfg.gateway.grpc_port = free_port()  # the default 8081 may be taken by another stack on this host
    # /metrics answers on its own loopback listener only (serving/exposure.py), here on a free port.
    cfg.exposure = cfg.exposure.model_copy(update={"metrics_port": metrics_port or free_port()})
    cfg.audit = cfg.audit.model_copy(update={"path": workdir / "audit.jsonl"})
    data = cfg.model_dump(mode="json")
    for dotted, value in (overrides or {}).items():
        set_path(data, dotted, value)
    ServingConfig.model_validate(data)  # a typo in --set fails here, not minutes later in a replica
    path = workdir / "serving.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**os.environ, **(env or {}), "RAY_TMPDIR": tempfile.mkdtemp(prefix="fsray-", dir="/tmp")}
    log = workdir / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "finserve.cli", "up", "--config", str(path)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"finserve up exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    raise TimeoutError("stack not ready")


async def one(client: httpx.AsyncClient, query: str, max_tokens: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    resp = await client.post(
        "/v1/chat/completions",
        json={
            "model": "finserve-banking",
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": query}],
        },
    )
    wall = (time.perf_counter() - t0) * 1000
    if resp.is_error:  # the finserve error envelope (or the ingress's text) says which stage failed
        print(f"HTTP {resp.status_code}: {resp.text[:500]}", file=sys.stderr)
    resp.raise_for_status()
    data = resp.json()
    return {
        "wall_ms": wall,
        "timings": data["finserve"]["timings_ms"],
        "cache": data["finserve"]["cache"],
        "tokens": data["usage"]["completion_tokens"],
    }


def stage_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    stages = sorted({k for r in results for k in r["timings"]})
    out = {
        stage: percentiles([r["timings"][stage] for r in results if stage in r["timings"]])
        for stage in stages
    }
    out["overhead"] = percentiles(
        [r["timings"]["total"] - r["timings"].get("generate", 0.0) for r in results]
    )
    out["client_overhead"] = percentiles([r["wall_ms"] - r["timings"].get("generate", 0.0) for r in results])
    out["client_wall"] = percentiles([r["wall_ms"] for r in results])
    out["cache"] = {c: sum(1 for r in results if r["cache"] == c) for c in {r["cache"] for r in results}}
    return out


def stage_sums(metrics: str) -> dict[str, tuple[float, float]]:
    """stage -> (seconds, count) from the gateway's per-stage histogram (``metrics``: the listener's base URL)."""
    from prometheus_client.parser import text_string_to_metric_families

    from finserve.contracts.metrics import STAGE_DURATION

    out: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(httpx.get(f"{metrics}/metrics", timeout=30).text):
        if family.name != STAGE_DURATION:
            continue
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")):
                out.setdefault(sample.labels["stage"], [0.0, 0.0])[sample.name.endswith("_count")] = (
                    sample.value
                )
    return {stage: (v[0], v[1]) for stage, v in out.items()}


def audit_mean_ms(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> float | None:
    s0, n0 = before.get("audit", (0.0, 0.0))
    s1, n1 = after.get("audit", (0.0, 0.0))
    return round((s1 - s0) / (n1 - n0) * 1000, 3) if n1 > n0 else None


async def sequential(base: str, queries: list[str], max_tokens: int) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        return [await one(client, q, max_tokens) for q in queries]


async def concurrent(base: str, queries: list[str], concurrency: int, max_tokens: int) -> dict[str, Any]:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(
        base_url=base, timeout=600, limits=httpx.Limits(max_connections=concurrency)
    ) as client:

        async def bounded(q: str) -> dict[str, Any]:
            async with sem:
                return await one(client, q, max_tokens)

        t0 = time.perf_counter()
        results = await asyncio.gather(*(bounded(q) for q in queries))
        elapsed = time.perf_counter() - t0
    tokens = sum(r["tokens"] for r in results)
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(results) / elapsed, 3),
        "tokens_per_s": round(tokens / elapsed, 2),
        "latency": percentiles([r["wall_ms"] for r in results]),
    }


def warm_up(base: str, seconds: float = 60) -> None:
    """Three answered requests before measuring. Right after start an ingress may still be settling (HAProxy
    checks a new replica before routing to it): a 5xx is retried here, never during the measurement."""
    deadline = time.monotonic() + seconds
    answered = 0
    while answered < 3:
        try:
            asyncio.run(sequential(base, ["warm up: how do I activate my card?"], 1))
            answered += 1
        except httpx.HTTPStatusError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=YAML",
        help="Override a ServingConfig field, e.g. deployments.retrieval_placement=gateway.",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Environment variable for the stack (e.g. a RAY_SERVE_* knob).",
    )
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    stack_env = dict(item.split("=", 1) for item in args.env)

    queries = validation_queries(args.queries + 200)
    overhead_q, load_q = queries[: args.queries], queries[args.queries :]
    port, metrics_port = free_port(), free_port()
    info = machine(PACKAGES)
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_stack(port, Path(tmp), overrides, stack_env, metrics_port=metrics_port)
        base, metrics = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"
        try:
            warm_up(base)
            sums = [stage_sums(metrics)]
            misses = asyncio.run(sequential(base, overhead_q, 1))
            sums.append(stage_sums(metrics))
            hits = asyncio.run(sequential(base, overhead_q, 1))
            sums.append(stage_sums(metrics))
            levels = []
            offset = 0
            for level in (int(x) for x in args.levels.split(",") if x.strip()):
                n = max(8, level * 3)
                levels.append(
                    asyncio.run(concurrent(base, load_q[offset : offset + n], level, args.max_tokens))
                )
                offset += n
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=180)
    info["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    result = {
        "machine": info,
        "command": "python -m bench.bench_pipeline " + " ".join(sys.argv[1:]),
        "overrides": overrides,
        "env": stack_env,
        "miss_path_concurrency_1": {
            **stage_summary(misses),
            "audit_mean_ms": audit_mean_ms(sums[0], sums[1]),
        },
        "l1_hit_concurrency_1": {**stage_summary(hits), "audit_mean_ms": audit_mean_ms(sums[1], sums[2])},
        "throughput": levels,
    }
    path = write_result("pipeline", result, args.out)
    o, h = result["miss_path_concurrency_1"]["overhead"], result["l1_hit_concurrency_1"]["overhead"]
    print(
        f"overhead miss p50 {o['p50_ms']} p95 {o['p95_ms']} ms; L1-hit p50 {h['p50_ms']} p95 {h['p95_ms']} ms"
    )
    co, ch = (
        result["miss_path_concurrency_1"]["client_overhead"],
        result["l1_hit_concurrency_1"]["client_overhead"],
    )
    print(
        f"client overhead miss p50 {co['p50_ms']} p95 {co['p95_ms']} ms; L1-hit p50 {ch['p50_ms']} p95 {ch['p95_ms']} ms;"
        f" audit mean {result['miss_path_concurrency_1']['audit_mean_ms']} ms"
    )
    for lv in levels:
        print(
            f"c={lv['concurrency']}: {lv['requests_per_s']} req/s, {lv['tokens_per_s']} tok/s, "
            f"p50 {lv['latency']['p50_ms']} ms p95 {lv['latency']['p95_ms']} ms"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
