"""The whole in-process pipeline (Presidio, MiniLM + Milvus Lite, real Redis) with generator.engine: llamacpp:
guarded answers, streaming, audit, and the engine's own figures on /metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from finserve.serving.audit import read_records

pytestmark = pytest.mark.slow

CARD = "4111 1111 1111 1111"


@pytest.fixture
def llamacpp_client(tmp_path: Path, small_index: Path, redis_server) -> Iterator:
    from fastapi.testclient import TestClient
    from stack_config import stack_config

    from finserve.serving.local import create_local_app

    cfg = stack_config(tmp_path, small_index, redis_server.url)
    cfg.generator = cfg.generator.model_copy(
        update={
            "engine": "llamacpp",
            "max_batch_size": 2,
            "llamacpp": cfg.generator.llamacpp.model_copy(update={"threads": 1}),
        }
    )
    with TestClient(create_local_app(cfg)) as client:
        client.config = cfg  # type: ignore[attr-defined]
        yield client


def test_llamacpp_answers_guarded_streams_and_reports_its_slots(llamacpp_client) -> None:
    body = {
        "model": "finserve-banking",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": f"My card {CARD} never arrived"}],
    }
    resp = llamacpp_client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["choices"][0]["message"]["content"].strip()
    assert data["usage"]["completion_tokens"] > 0 and data["usage"]["prompt_tokens"] > 0
    assert data["finserve"]["pii"]["input"] == {"CREDIT_CARD": 1}
    assert CARD not in resp.text

    with llamacpp_client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as stream:
        assert stream.status_code == 200
        events = [line[6:] for line in stream.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text.strip() and chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    lines = list(read_records(llamacpp_client.config.audit.path))
    assert [line["status"] for line in lines] == [200, 200] and lines[-1]["output"] == text
    for line in lines:
        assert CARD not in json.dumps(line)

    metrics = llamacpp_client.get("/metrics").text
    assert 'finserve_engine_slots{engine="llamacpp"} 2.0' in metrics
    generated = [
        line for line in metrics.splitlines() if line.startswith("finserve_engine_generated_tokens_total")
    ]
    assert generated and float(generated[0].split()[-1]) >= data["usage"]["completion_tokens"]
