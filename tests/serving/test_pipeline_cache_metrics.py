"""finserve_cache_lookups_total{tier="l2",result="error"} reaches the gateway's /metrics when Redis dies.

It never did: the retriever counted its lookups in its own process's default registry, which no /metrics
serves (and in the Ray app it is another replica's process), while the gateway only counted the final tier.
Real Presidio, MiniLM + Milvus Lite, a real redis-server killed mid-test; the generator is down (the openai
engine on a refused port), so each request is answered with the fallback and no model is loaded.
"""

from __future__ import annotations

import re

from netutil import free_port, spawn_redis
from stack_config import stack_config

from finserve.serving.config import DEFAULT_MODEL
from finserve.serving.inference.config import OpenAIOptions
from finserve.serving.local import create_local_app


def sample(metrics: str, tier: str, result: str) -> float:
    m = re.search(rf'^finserve_cache_lookups_total{{result="{result}",tier="{tier}"}} (\S+)$', metrics, re.M)
    return float(m.group(1)) if m else 0.0


def test_l2_errors_appear_on_metrics_after_redis_is_killed(tmp_path, small_index) -> None:
    from fastapi.testclient import TestClient

    port = free_port()
    redis_proc = spawn_redis(port, tmp_path)
    cfg = stack_config(tmp_path, small_index, f"redis://127.0.0.1:{port}/0")
    # A generous Redis timeout: a loaded machine must not turn the first lookup into an error (a killed
    # server refuses connections at once, so the errors counted below are the kill's, not the clock's).
    cfg.retrieval = cfg.retrieval.model_copy(update={"l2_timeout_s": 5.0})
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
    finally:
        if redis_proc.poll() is None:
            redis_proc.kill()
    assert (sample(before, "l1", "miss"), sample(before, "l2", "miss"), sample(before, "l2", "error")) == (
        1,
        1,
        0,
    )
    assert sample(after, "l2", "error") == 2 and sample(after, "l1", "miss") == 3
