"""finserve_cache_lookups_total{tier="l2",result="error"} reaches the gateway's /metrics when Redis dies, and
finserve_circuit_breaker_open{breaker="redis_l2"} shows the outage until Redis is back.

It never did: the retriever counted its lookups in its own process's default registry, which no /metrics
serves (and in the Ray app it is another replica's process), while the gateway only counted the final tier.
Real Presidio, MiniLM + Milvus Lite, a real redis-server killed mid-test; the generator is down (the openai
engine on a refused port), so each request is answered with the fallback and no model is loaded.
"""

from __future__ import annotations

import re
import time

from netutil import free_port, spawn_redis
from stack_config import stack_config

from finserve.serving.config import DEFAULT_MODEL
from finserve.serving.inference.config import OpenAIOptions
from finserve.serving.local import create_local_app


def sample(metrics: str, tier: str, result: str) -> float:
    m = re.search(rf'^finserve_cache_lookups_total{{result="{result}",tier="{tier}"}} (\S+)$', metrics, re.M)
    return float(m.group(1)) if m else 0.0


def breaker(metrics: str, name: str) -> float | None:
    m = re.search(rf'^finserve_circuit_breaker_open{{breaker="{name}"}} (\S+)$', metrics, re.M)
    return float(m.group(1)) if m else None


def test_l2_errors_appear_on_metrics_after_redis_is_killed(tmp_path, small_index) -> None:
    from fastapi.testclient import TestClient

    port = free_port()
    redis_proc = spawn_redis(port, tmp_path)
    cfg = stack_config(tmp_path, small_index, f"redis://127.0.0.1:{port}/0")
    # A generous Redis timeout: a loaded machine must not turn the first lookup into an error (a killed
    # server refuses connections at once, so the errors counted below are the kill's, not the clock's).
    # A short breaker window, so the test can see L2 come back after Redis restarts.
    cfg.retrieval = cfg.retrieval.model_copy(update={"l2_timeout_s": 5.0, "l2_retry_s": 0.5})
    cfg.generator = cfg.generator.model_copy(
        update={
            "engine": "openai",
            "openai": OpenAIOptions(base_url=f"http://127.0.0.1:{free_port()}/v1", default_model="m"),
        }
    )

    def ask(client: TestClient, text: str) -> int:
        return client.post(
            "/v1/chat/completions",
            json={"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": text}]},
        ).status_code

    try:
        with TestClient(create_local_app(cfg)) as client:
            assert ask(client, "How do I activate my card?") == 200
            before = client.get("/metrics").text
            redis_proc.kill()
            redis_proc.wait(timeout=10)
            assert ask(client, "My card has not arrived yet") == 200
            assert (
                ask(client, "What exchange rate do you use?") == 200
            )  # breaker open: skipped, still an error
            after = client.get("/metrics").text
            redis_proc = spawn_redis(port, tmp_path)  # back on the same port
            time.sleep(0.6)  # past the breaker's window: the next L2 lookup probes Redis again
            assert ask(client, "Can I get a refund for a card payment?") == 200
            recovered = client.get("/metrics").text
    finally:
        if redis_proc.poll() is None:
            redis_proc.kill()
    assert (sample(before, "l1", "miss"), sample(before, "l2", "miss"), sample(before, "l2", "error")) == (
        1,
        1,
        0,
    )
    assert sample(after, "l2", "error") == 2 and sample(after, "l1", "miss") == 3
    # The breaker as the gateway saw it: closed, open after the kill, closed again once Redis answers.
    assert (breaker(before, "redis_l2"), breaker(after, "redis_l2"), breaker(recovered, "redis_l2")) == (
        0,
        1,
        0,
    )
    assert breaker(recovered, "vector_store") == 0  # Milvus answered every search
    assert sample(recovered, "l2", "miss") == 2
