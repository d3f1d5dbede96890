"""The openai engine and provider failover against real OpenAI-compatible upstreams: llama.cpp's HTTP server
(xllamacpp) serving the packaged SmolLM2 GGUF in child processes that the tests kill mid-traffic.

The rest of the stack is real as well (Presidio, MiniLM + Milvus Lite, the audit log, the HTTP app).
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from llama_upstream import LlamaUpstream
from netutil import free_port
from stack_config import stack_config

from finserve.contracts import AdapterNotFound, AdapterRef
from finserve.serving.audit import read_records
from finserve.serving.config import DEFAULT_MODEL
from finserve.serving.inference.config import GeneratorConfig, OpenAIOptions, ProviderConfig
from finserve.serving.inference.errors import ProviderUnavailable
from finserve.serving.inference.openai_engine import OpenAIEngine
from finserve.serving.inference.types import ChatMessage, GenerationRequest
from finserve.serving.local import create_local_app

pytestmark = pytest.mark.slow

KEY_ENV = "FINSERVE_TEST_UPSTREAM_KEY"
KEY = "sk-test-upstream"
CARD = "4458 5630 7407 7526"


@pytest.fixture
def upstream(monkeypatch):  # noqa: ANN201 - a factory of started upstreams, all killed at the end
    monkeypatch.setenv(KEY_ENV, KEY)
    started: list[LlamaUpstream] = []

    def start() -> LlamaUpstream:
        server = LlamaUpstream(free_port(), KEY).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def options(server: LlamaUpstream, **over: object) -> OpenAIOptions:
    return OpenAIOptions(
        **{
            "base_url": server.base_url,
            "api_key_env": KEY_ENV,
            "models": {"base@0.0.0": "smollm2-135m"},
            **over,
        }
    )


async def test_engine_generates_and_streams_the_same_greedy_text(upstream) -> None:
    server = upstream()
    engine = OpenAIEngine(options(server), GeneratorConfig(max_new_tokens=12))
    req = GenerationRequest(messages=[ChatMessage(role="user", content="Say hello to the customer.")])
    await engine.start()
    try:
        await engine.ensure_adapter(AdapterRef.base())
        with pytest.raises(AdapterNotFound):
            await engine.ensure_adapter(
                AdapterRef.parse("tiny@1.0.0")
            )  # unmapped: refused, never substituted
        whole = await engine.generate(req)
        pieces = [c async for c in engine.stream(req)]
    finally:
        await engine.stop()
    assert whole.text and whole.completion_tokens > 0 and whole.prompt_tokens > 0
    assert "".join(c.delta for c in pieces) == whole.text
    assert pieces[-1].finish_reason == whole.finish_reason and pieces[-1].usage.completion_tokens > 0


async def test_wrong_api_key_is_provider_unavailable_without_the_body(
    upstream, monkeypatch, tmp_path
) -> None:
    server = upstream()
    secret_file = tmp_path / "key"
    secret_file.write_text("sk-wrong\n")
    engine = OpenAIEngine(options(server, api_key_file=str(secret_file)), GeneratorConfig(max_new_tokens=4))
    await engine.start()
    try:
        with pytest.raises(ProviderUnavailable, match="HTTP 401"):
            await engine.generate(GenerationRequest(messages=[ChatMessage(role="user", content="hi")]))
    finally:
        await engine.stop()


def pool_app(tmp_path: Path, index: Path, a: LlamaUpstream, b: LlamaUpstream) -> TestClient:
    cfg = stack_config(tmp_path, index)
    cfg.generator = cfg.generator.model_copy(
        update={
            "max_new_tokens": 8,
            "providers": [
                ProviderConfig(name="primary", engine="openai", openai=options(a), retry_s=60),
                ProviderConfig(name="secondary", engine="openai", openai=options(b), retry_s=60),
            ],
        }
    )
    cfg.gateway = cfg.gateway.model_copy(update={"max_tokens_default": 8})
    # No deadline in the way: on a loaded test machine a request may take longer than the default 30 s, and
    # these tests are about failover, not time (the deadline tests are in tests/serving/degrade/).
    cfg.degrade = cfg.degrade.model_copy(
        update={"deadline_default_ms": 3_600_000, "deadline_max_ms": 3_600_000}
    )
    client = TestClient(create_local_app(cfg))
    client.config = cfg  # type: ignore[attr-defined]
    return client


def ask(client: TestClient, text: str, stream: bool = False):  # noqa: ANN201
    return client.post(
        "/v1/chat/completions",
        json={"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": text}], "stream": stream},
    )


QUESTIONS = [
    "How do I activate my card?",
    "My card has not arrived",
    "What exchange rate do you use?",
    "I lost my card",
    "Why was I charged a card payment fee?",
    "My transfer has not been received",
]


def test_killing_the_first_provider_mid_traffic_fails_no_request(tmp_path, small_index, upstream) -> None:
    a, b = upstream(), upstream()
    killed = threading.Event()
    with pool_app(tmp_path, small_index, a, b) as client:

        def one(i: int) -> tuple[bool, object]:
            after_kill = killed.is_set()
            return after_kill, ask(client, QUESTIONS[i % len(QUESTIONS)] + f" ({i})")

        with ThreadPoolExecutor(2) as pool:
            first = [f.result() for f in [pool.submit(one, i) for i in range(2)]]
            in_flight = [pool.submit(one, i) for i in range(2, 4)]
            a.kill()  # while these two are queued or generating on the primary
            killed.set()
            rest = [f.result() for f in in_flight] + [
                f.result() for f in [pool.submit(one, i) for i in range(4, 6)]
            ]
        streamed = ask(client, "Can I still use my card?", stream=True)
    responses = first + rest
    assert [r.status_code for _, r in responses] == [200] * 6, [r.text for _, r in responses]
    assert all(r.json()["finserve"]["degraded"] is None for _, r in responses)
    assert [r.headers["x-finserve-provider"] for _, r in first] == ["primary", "primary"]
    assert {r.headers["x-finserve-provider"] for after, r in responses if after} == {"secondary"}
    chunks = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    assert chunks[-1]["finserve"]["provider"] == "secondary" and streamed.text.rstrip().endswith("[DONE]")
    # The first chunk with text names the provider already (failover ends before the first piece).
    first = next(c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content"))
    assert first["finserve"] == {"provider": "secondary"}
    providers = [r["provider"] for r in read_records(client.config.audit.path)]  # type: ignore[attr-defined]
    assert providers.count("primary") >= 2 and providers[-1] == "secondary" and None not in providers


class Spy:
    """Records what the generator was given (a spy around the real failover engine, not a fake)."""

    def __init__(self, inner) -> None:
        self.inner, self.requests = inner, []

    async def generate(self, request):  # noqa: ANN001, ANN201
        self.requests.append(request)
        return await self.inner.generate(request)

    def stream(self, request):  # noqa: ANN001, ANN201
        self.requests.append(request)
        return self.inner.stream(request)


def test_both_down_answers_from_the_cache_then_the_fallback(tmp_path, small_index, upstream) -> None:
    a, b = upstream(), upstream()
    question = f"My card {CARD} has not arrived yet"
    with pool_app(tmp_path, small_index, a, b) as client:
        live = ask(client, question)
        a.kill()
        b.kill()
        cached = ask(client, question)
        new = ask(client, "How do I activate my card?")
    assert live.status_code == cached.status_code == new.status_code == 200
    assert live.headers["x-finserve-provider"] == "primary"
    assert cached.headers["x-finserve-degraded"] == "cache" and "x-finserve-provider" not in cached.headers
    assert (
        cached.json()["choices"][0]["message"]["content"] == live.json()["choices"][0]["message"]["content"]
    )
    assert new.headers["x-finserve-degraded"] == "fallback"
    assert new.json()["finserve"]["intent"] == "activate_my_card"
    records = list(read_records(client.config.audit.path))  # type: ignore[attr-defined]
    assert [(r["degraded"], r["provider"]) for r in records] == [
        (None, "primary"),
        ("cache", None),
        ("fallback", None),
    ]
    assert all(CARD not in json.dumps(r) for r in records)


async def test_the_upstream_only_ever_sees_the_masked_prompt(tmp_path, small_index, upstream) -> None:
    from finserve.serving.local import build_local_stack
    from finserve.serving.pipeline import RequestContext
    from finserve.serving.schemas import ChatCompletionRequest

    a, b = upstream(), upstream()
    cfg = pool_app(tmp_path, small_index, a, b).config  # type: ignore[attr-defined]
    stack = build_local_stack(cfg)
    spy = Spy(stack.pipeline.generator)
    stack.pipeline.generator = spy
    await stack.start()
    try:
        req = ChatCompletionRequest(
            model=DEFAULT_MODEL,
            messages=[{"role": "user", "content": f"My card {CARD} was stolen, please block it"}],
        )
        answer = await stack.pipeline.chat(req, RequestContext())
    finally:
        await stack.stop()
    [sent] = spy.requests
    prompt = json.dumps([m.model_dump() for m in sent.messages])
    assert "4458" not in prompt and "7526" not in prompt and "stolen, please block it" in prompt
    assert answer.finserve.provider == "primary" and CARD not in answer.choices[0].message.content
