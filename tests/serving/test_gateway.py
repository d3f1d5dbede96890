"""The HTTP gateway over the real in-process pipeline: Presidio, MiniLM + Milvus Lite, a real
Redis, the real SmolLM2 weights. Ray is left out here (test_e2e_stack.py runs the Ray graph)."""

from __future__ import annotations

import json

import pytest
import redis

from finserve.serving.audit import read_records

pytestmark = pytest.mark.slow

CARD = "4111 1111 1111 1111"
IBAN = "GB82 WEST 1234 5698 7654 32"
EMAIL = "jane.doe@example.com"
SECRETS = (CARD, IBAN, EMAIL, "4111111111111111", "GB82WEST12345698765432", "jane.doe")


def ask(client, content: str, **extra):
    body = {"model": "finserve-banking", "messages": [{"role": "user", "content": content}], **extra}
    return client.post("/v1/chat/completions", json=body)


def audit_lines(client) -> list[dict]:
    return list(read_records(client.config.audit.path))


def test_answer_carries_the_finserve_object_and_no_pii(local_client, redis_server):
    resp = ask(local_client, f"My card {CARD} never arrived, email me at {EMAIL}, IBAN {IBAN}")
    assert resp.status_code == 200, resp.text
    data = resp.json()
    info = data["finserve"]
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"].strip()
    assert info["adapter"] == "base@0.0.0" and info["route"] == "stable"
    assert info["intent"]
    assert info["citations"]
    assert info["pii"]["input"] == {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1, "IBAN_CODE": 1}
    assert {"guard_input", "retrieval", "generate", "guard_output", "total"} <= set(info["timings_ms"])
    for secret in SECRETS:
        assert secret not in resp.text
    [line] = audit_lines(local_client)
    assert line["status"] == 200 and line["request_id"] == info["request_id"]
    raw_audit = local_client.config.audit.path.read_text()
    r = redis.Redis.from_url(redis_server.url)
    cached = b"".join(k + (r.get(k) or b"") for k in r.keys("*"))
    for secret in SECRETS:
        assert secret not in raw_audit
        assert secret.encode() not in cached


def test_personal_details_are_masked_before_anything_keeps_them(local_client, redis_server):
    details = {
        "DATE_OF_BIRTH": "14/03/1985",
        "ADDRESS": "221B Baker Street, London NW1 6XE",
        "UK_NINO": "AB 12 34 56 C",
        "CREDENTIAL": "Hunter2xyz",
    }
    resp = ask(
        local_client,
        f"I moved. My new address is {details['ADDRESS']}. My date of birth is {details['DATE_OF_BIRTH']}, "
        f"NI number {details['UK_NINO']}, and my password is {details['CREDENTIAL']}. How do I update my details?",
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["finserve"]["pii"]["input"] == dict.fromkeys(details, 1)
    raw_audit = local_client.config.audit.path.read_text()
    r = redis.Redis.from_url(redis_server.url)
    cached = b"".join(k + (r.get(k) or b"") for k in r.keys("*"))
    for value in (*details.values(), "Baker Street", "NW1 6XE"):
        assert value not in resp.text
        assert value not in raw_audit
        assert value.encode() not in cached


def test_streaming_sends_chunks_then_done(local_client):
    with local_client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "finserve-banking",
            "stream": True,
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "How do I activate my card?"}],
        },
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text.strip()
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["finserve"]["intent"]
    [line] = audit_lines(local_client)  # written before the final chunk, with exactly what was sent
    assert (
        line["status"] == 200
        and line["output"] == text
        and line["citations"] == chunks[-1]["finserve"]["citations"]
    )


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (json.dumps({"model": "finserve-banking", "messages": []}).encode(), 400, "messages"),
        (
            json.dumps(
                {"model": "finserve-banking", "messages": [{"role": "robot", "content": "x"}]}
            ).encode(),
            400,
            "messages.0.role",
        ),
        (
            json.dumps({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            404,
            "not served",
        ),
        (
            json.dumps(
                {
                    "model": "finserve-banking",
                    "max_tokens": 100000,
                    "messages": [{"role": "user", "content": "hi"}],
                }
            ).encode(),
            400,
            "max_tokens",
        ),
    ],
)
def test_bad_input_gets_a_clear_error_and_an_audit_line(local_client, body, status, needle):
    resp = local_client.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert resp.status_code == status
    err = resp.json()["error"]
    assert needle in err["message"] and "Traceback" not in resp.text
    [line] = audit_lines(local_client)
    assert line["status"] == status and line["error"] == err["code"]


def test_null_optional_fields_mean_not_given(local_client):
    """As in OpenAI's API: clients that serialise typed request objects send null for what was left unset."""
    body = {
        "model": "finserve-banking",
        "messages": [{"role": "user", "content": "How do I activate my card?"}],
        "max_tokens": 8,
        **dict.fromkeys(["temperature", "top_p", "stream", "stop", "seed", "n", "tools", "response_format"]),
    }
    resp = local_client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"].strip()
    # a required field is still required
    resp = local_client.post("/v1/chat/completions", json={**body, "model": None})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "model"


def test_oversized_body_is_413(local_client):
    big = "x" * (local_client.config.gateway.max_body_bytes + 1)
    resp = ask(local_client, big)
    assert resp.status_code == 413
    assert audit_lines(local_client)[0]["status"] == 413


def test_override_of_a_version_the_route_does_not_serve_is_403(local_client):
    resp = local_client.post(
        "/v1/chat/completions",
        headers={"x-finserve-adapter": "banking@9.9.9"},
        json={"model": "finserve-banking", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert resp.status_code == 403
    assert (resp.json()["error"]["code"], resp.json()["error"]["param"]) == (
        "forbidden",
        "x-finserve-adapter",
    )


def test_health_ready_models_metrics(local_client):
    assert local_client.get("/healthz").json() == {"status": "ok"}
    ready = local_client.get("/readyz")
    assert ready.status_code == 200 and all(ready.json()["stages"].values())
    # Chat models first, then the embedder /v1/embeddings serves.
    assert [m["id"] for m in local_client.get("/v1/models").json()["data"]] == [
        "finserve-banking",
        "all-MiniLM-L6-v2",
    ]
    ask(local_client, f"card {CARD} lost")
    metrics = local_client.get("/metrics").text
    assert (
        'finserve_requests_total{adapter="base",code="200",model="finserve-banking",version="0.0.0"} 1.0'
        in metrics
    )
    assert 'finserve_pii_findings_total{adapter="base",entity="CREDIT_CARD"' in metrics
    assert CARD not in metrics


def test_prompt_prefix_reuse_is_reported_in_usage_and_metrics(local_client):
    """Two questions retrieving the same knowledge: the second prefill reuses the first's prefix."""
    usages = [
        ask(local_client, q).json()["usage"]
        for q in ("My card has not arrived yet", "My new card has still not arrived")
    ]
    cached = [u["prompt_tokens_details"]["cached_tokens"] for u in usages]
    assert cached[0] == 0 and 16 <= cached[1] < usages[1]["prompt_tokens"], usages
    metrics = local_client.get("/metrics").text
    labels = 'adapter="base",model="finserve-banking",source="{}",version="0.0.0"'
    assert f"finserve_prompt_tokens_total{{{labels.format('cached')}}} {float(sum(cached))}" in metrics
    computed = sum(u["prompt_tokens"] for u in usages) - sum(cached)
    assert f"finserve_prompt_tokens_total{{{labels.format('computed')}}} {float(computed)}" in metrics


def test_oip_v2_infer(local_client):
    resp = local_client.post(
        "/v2/models/finserve-banking/infer",
        json={
            "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [f"lost card {CARD}"]}],
            "parameters": {"max_tokens": 12},
        },
    )
    assert resp.status_code == 200, resp.text
    outputs = {o["name"]: o["data"] for o in resp.json()["outputs"]}
    assert outputs["adapter"] == ["base@0.0.0"] and outputs["intent"][0]
    assert CARD not in resp.text
    bad = local_client.post(
        "/v2/models/finserve-banking/infer",
        json={"inputs": [{"name": "image", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
    )
    assert bad.status_code == 400 and "text" in bad.json()["error"]  # OIP v2: error is the message string
