"""When the generator is down or hangs, the customer gets the bank's curated answer of the classified
intent, marked and audited as degraded; or 503/504 where the route's policy says error.

Everything is real: Presidio, MiniLM + Milvus Lite retrieval, the audit log, the HTTP app, and the
generator is the openai engine pointed at a real socket that refuses connections (down) or accepts and
never answers (hanging); no model is loaded because none is ever reached.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from fastapi.testclient import TestClient
from stack_config import stack_config

from finserve.serving.audit import read_records
from finserve.serving.config import DEFAULT_MODEL
from finserve.serving.inference.config import OpenAIOptions
from finserve.serving.local import create_local_app
from finserve.serving.retrieval.config import default_answers_path

QUESTION = "It has been two weeks and my new card still hasn't arrived, card 4458 5630 7407 7526"
CURATED = yaml.safe_load(default_answers_path().read_text())["card_arrival"]


def app_for(
    tmp_path: Path, index: Path, url: str, redis_url: str | None = None, **degrade: object
) -> TestClient:
    cfg = stack_config(tmp_path, index, redis_url)
    cfg.generator = cfg.generator.model_copy(
        update={
            "engine": "openai",
            "openai": OpenAIOptions(base_url=url, default_model="smol", read_timeout_s=30),
        }
    )
    cfg.degrade = cfg.degrade.model_copy(update=degrade)
    client = TestClient(create_local_app(cfg))
    client.config = cfg  # type: ignore[attr-defined]
    return client


def ask(client: TestClient, headers: dict | None = None, stream: bool = False):  # noqa: ANN201
    return client.post(
        "/v1/chat/completions",
        headers=headers or {},
        json={"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": QUESTION}], "stream": stream},
    )


def last_record(client: TestClient) -> dict:
    return list(read_records(client.config.audit.path))[-1]  # type: ignore[attr-defined]


def test_generator_down_gets_the_curated_answer_marked_and_audited(
    tmp_path, small_index, refused_url
) -> None:
    with app_for(tmp_path, small_index, refused_url) as client:
        resp = ask(client)
        metrics = client.get("/metrics").text
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["choices"][0]["message"]["content"] == CURATED
    assert body["finserve"]["degraded"] == "fallback" and body["finserve"]["intent"] == "card_arrival"
    assert resp.headers["x-finserve-degraded"] == "fallback"
    record = last_record(client)
    assert (record["status"], record["degraded"], record["error"]) == (200, "fallback", "backend_unavailable")
    assert "4458" not in record["input"] and record["output"] == CURATED
    assert (
        'finserve_degraded_responses_total{adapter="base",cause="backend_unavailable",kind="fallback"'
        in metrics
    )


def test_deadline_header_bounds_a_hanging_generator(tmp_path, small_index, hanging_url) -> None:
    with app_for(tmp_path, small_index, hanging_url, fallback_reserve_ms=100) as client:
        resp = ask(client, {"x-finserve-deadline-ms": "1500"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["finserve"]["degraded"] == "fallback"
    record = last_record(client)
    assert (record["degraded"], record["error"]) == ("fallback", "deadline_exceeded")


def test_error_policy_answers_504_on_a_blown_deadline_and_503_when_down(
    tmp_path, small_index, hanging_url, refused_url
) -> None:
    policy = {"route_policy": {DEFAULT_MODEL: "error"}}
    with app_for(tmp_path / "hang", small_index, hanging_url, **policy) as client:
        slow = ask(client, {"x-finserve-deadline-ms": "1000"})
        slow_record = last_record(client)
    with app_for(tmp_path / "down", small_index, refused_url, **policy) as client:
        down = ask(client)
    assert (slow.status_code, slow.json()["error"]["code"]) == (504, "deadline_exceeded")
    assert "x-finserve-degraded" not in slow.headers
    assert (slow_record["status"], slow_record["degraded"]) == (504, None)
    assert (down.status_code, down.json()["error"]["code"]) == (503, "backend_unavailable")
    assert int(down.headers["Retry-After"]) >= 1


def test_stream_failing_before_any_text_streams_the_fallback(tmp_path, small_index, refused_url) -> None:
    import json

    with app_for(tmp_path, small_index, refused_url) as client:
        resp = ask(client, stream=True)
    events = [line[6:] for line in resp.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == CURATED
    assert chunks[-1]["finserve"]["degraded"] == "fallback"
    # Said up front too: the first chunk with text carries it (the headers went out before it was known).
    [first] = [c for c in chunks if c["choices"][0]["delta"].get("content")][:1]
    assert first["finserve"] == {"degraded": "fallback"}
    assert "finserve" not in chunks[0] and "x-finserve-degraded" not in resp.headers
    assert last_record(client)["degraded"] == "fallback"


def test_a_bad_deadline_header_is_a_400_naming_it(tmp_path, small_index, refused_url) -> None:
    with app_for(tmp_path, small_index, refused_url) as client:
        answers = [
            ask(client, {"x-finserve-deadline-ms": value})
            for value in ("soon", "-5", "0", "12345678", "٣".encode())
        ]
    assert [r.status_code for r in answers] == [400] * 5
    assert {r.json()["error"]["param"] for r in answers} == {"x-finserve-deadline-ms"}
