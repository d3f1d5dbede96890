"""Every request leaves exactly one audit line, written before the client sees the end of its answer.

The guard (Presidio), router, audit log and HTTP app are the real ones. Retrieval and the generator
are stand-ins (the real ones run in test_gateway.py, marked slow): the generator emits scripted words
and can hold a stream open mid-answer, which is what the abandonment tests need and the real engine
cannot be paced for.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from readonly import read_only
from scripted_stages import Generator, scripted_pipeline

from finserve.serving.audit import read_records
from finserve.serving.config import DEFAULT_MODEL, ServingConfig
from finserve.serving.errors import AuditUnavailable
from finserve.serving.gateway import create_api
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.pipeline import Pipeline, RequestContext
from finserve.serving.schemas import ChatCompletionRequest
from finserve.serving.stages import LocalGuard

WORDS = [f"word{i:02d}" for i in range(40)]  # 280 characters: past the stream guard's holdback
HOLD_AT = 30
DEADLOCK_GUARD_S = 60  # only bounds a hang; nothing here asserts a duration


@pytest.fixture(scope="module")
def guard() -> LocalGuard:
    return LocalGuard(PIIGuard(ServingConfig().guard))


def _pipeline(tmp_path: Path, guard: LocalGuard, hold: bool = False, **audit: object) -> Pipeline:
    """Scripted words; with `hold`, the stream stops before word HOLD_AT until the client goes away.
    ``audit``: more AuditConfig fields."""
    generator = Generator(WORDS, hold_stream_at=HOLD_AT if hold else None)
    return scripted_pipeline(ServingConfig(), tmp_path, guard, generator=generator, audit=audit)


def _request(stream: bool = False) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model=DEFAULT_MODEL,
        stream=stream,
        messages=[{"role": "user", "content": "Where is my card 4111 1111 1111 1111?"}],
    )


def _records(pipeline: Pipeline) -> list[dict]:
    return list(read_records(pipeline.config.audit.path))


def _text(chunks: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)


# ---- the pipeline: write-ahead and abandonment ----


async def test_a_streams_line_is_written_before_its_final_chunk(tmp_path: Path, guard: LocalGuard) -> None:
    pipeline = _pipeline(tmp_path, guard)
    chunks: list[dict] = []
    stream = await pipeline.chat_stream(_request(stream=True), RequestContext(tenant="acme"))
    async for chunk in stream:
        if chunk["choices"][0]["finish_reason"]:
            [record] = _records(pipeline)  # already durable when the end reaches the client
            assert (record["status"], record["output"]) == (200, _text(chunks))
        chunks.append(chunk)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    [record] = _records(pipeline)
    assert record["citations"] == ["answer:card_arrival"] and record["index_version"] == "idx-test-1"
    assert (record["route"], record["tenant"], record["adapter"]) == ("stable", "acme", "base@0.0.0")
    assert record["principal"] is None and record["trace_id"] is None  # until identity and tracing land
    assert "4111" not in json.dumps(record)


async def test_a_failed_append_ends_the_stream_without_its_finish(tmp_path: Path, guard: LocalGuard) -> None:
    pipeline = _pipeline(tmp_path, guard)
    await pipeline.chat(_request(), RequestContext())  # the file exists, with one line
    chunks: list[dict] = []
    with read_only(pipeline.config.audit.path):
        stream = await pipeline.chat_stream(_request(stream=True), RequestContext())
        with pytest.raises(AuditUnavailable):
            async for chunk in stream:
                chunks.append(chunk)
        with pytest.raises(AuditUnavailable):
            await pipeline.chat(_request(), RequestContext())
        assert await pipeline.audit.ready() is False
    assert chunks and not any(c["choices"][0]["finish_reason"] for c in chunks)
    assert len(_records(pipeline)) == 1
    assert await pipeline.audit.ready() is True


async def test_a_closed_stream_leaves_one_line_with_the_text_sent(tmp_path: Path, guard: LocalGuard) -> None:
    pipeline = _pipeline(tmp_path, guard, hold=True)
    stream = await pipeline.chat_stream(_request(stream=True), RequestContext(request_id="closed"))
    got: list[dict] = []
    async for chunk in stream:  # read until some text arrived, then leave as a departing client does
        got.append(chunk)
        if _text(got):
            break
    await stream.aclose()  # type: ignore[attr-defined]
    [record] = _records(pipeline)
    assert (record["request_id"], record["status"], record["error"]) == (
        "closed",
        499,
        "client_closed_request",
    )
    assert record["output"] == _text(got) != ""


async def test_a_cancelled_stream_leaves_one_line_with_the_text_sent(
    tmp_path: Path, guard: LocalGuard
) -> None:
    pipeline = _pipeline(tmp_path, guard, hold=True)
    stream = await pipeline.chat_stream(_request(stream=True), RequestContext(request_id="cancelled"))
    received: list[dict] = []

    async def consume() -> None:
        async for chunk in stream:
            received.append(chunk)

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(pipeline.generator.holding.wait(), DEADLOCK_GUARD_S)  # type: ignore[attr-defined]
    task.cancel()  # what the server does when the client disconnects mid-await
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(asyncio.gather(*pipeline._pending_audits), DEADLOCK_GUARD_S)
    [record] = _records(pipeline)
    assert (record["request_id"], record["status"]) == ("cancelled", 499)
    assert record["output"] == _text(received) != ""


async def test_a_stream_dropped_before_its_first_byte_still_leaves_a_line(
    tmp_path: Path, guard: LocalGuard
) -> None:
    pipeline = _pipeline(tmp_path, guard)
    stream = await pipeline.chat_stream(_request(stream=True), RequestContext(request_id="never-read"))
    await stream.aclose()  # type: ignore[attr-defined]
    [record] = _records(pipeline)
    assert (record["request_id"], record["status"], record["output"]) == ("never-read", 499, "")


# ---- over HTTP ----


@pytest.fixture
def app_client(tmp_path: Path, guard: LocalGuard) -> Iterator[TestClient]:
    # The up-front check of the log is asked once and then reused for the whole test: these tests see the
    # append itself fail closed (what happens in the second before the check notices).
    pipeline = _pipeline(tmp_path, guard, status_ttl_s=3600)

    async def readiness() -> dict[str, bool]:
        return {"audit": await pipeline.audit.ready()}

    with TestClient(create_api(pipeline, readiness)) as client:
        client.pipeline = pipeline  # type: ignore[attr-defined]
        yield client


def _body(model: str = DEFAULT_MODEL, content: str = "Where is my card?", **extra: str) -> str:
    """A JSON body as text, so tests can put in what json.dumps would never write."""
    fields = [
        f'"model":{model}' if model.startswith('"') else f'"model":{json.dumps(model)}',
        f'"messages":[{{"role":"user","content":{content if content.startswith(chr(34)) else json.dumps(content)}}}]',
    ]
    fields += [f'"{k}":{v}' for k, v in extra.items()]
    return "{" + ",".join(fields) + "}"


BAD_INPUTS = {
    "max_tokens of 5,000 digits": (_body(max_tokens="9" * 5000), 400),
    "30,000 nested brackets": (_body(metadata="[" * 30000 + "]" * 30000), 400),
    "a 300-character model": (_body(model="m" * 300), None),  # any 4xx: unknown, or refused as too long
    "a lone surrogate in content": (_body(content='"card \\ud800 lost"'), 400),
    "a lone surrogate in model": (_body(model='"finserve\\ud800"'), 400),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_a_4xx_with_exactly_one_line(app_client: TestClient, case: str) -> None:
    body, status = BAD_INPUTS[case]
    resp = app_client.post(
        "/v1/chat/completions", content=body.encode(), headers={"content-type": "application/json"}
    )
    assert 400 <= resp.status_code < 500 and (status is None or resp.status_code == status), resp.text
    assert "Traceback" not in resp.text and resp.json()["error"]["code"] != "internal_error"
    [record] = _records(app_client.pipeline)  # type: ignore[attr-defined]
    assert record["status"] == resp.status_code and record["error"] == resp.json()["error"]["code"]
    assert len(record["model"]) <= 200
    for stream in (True,):  # the same body as a stream is refused the same way, before any chunk
        again = app_client.post(
            "/v1/chat/completions",
            content=body.replace("{", '{"stream":true,', 1).encode(),
            headers={"content-type": "application/json"},
        )
        assert again.status_code == resp.status_code and stream


def test_a_long_model_over_oip_v2_rest_is_a_4xx_with_one_line(app_client: TestClient) -> None:
    resp = app_client.post(
        f"/v2/models/{'m' * 300}/infer",
        json={"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["Where is my card?"]}]},
    )
    assert 400 <= resp.status_code < 500, resp.text
    [record] = _records(app_client.pipeline)  # type: ignore[attr-defined]
    assert record["status"] == resp.status_code and len(record["model"]) <= 200


def test_unwritable_audit_means_503_an_error_event_and_not_ready(app_client: TestClient) -> None:
    assert app_client.post("/v1/chat/completions", content=_body()).status_code == 200
    assert app_client.get("/readyz").status_code == 200
    with read_only(app_client.pipeline.config.audit.path):  # type: ignore[attr-defined]
        plain = app_client.post("/v1/chat/completions", content=_body())
        assert plain.status_code == 503 and plain.json()["error"]["code"] == "audit_unavailable"
        assert "Retry-After" in plain.headers
        rejected = app_client.post("/v1/chat/completions", content=b"{not json")
        assert rejected.status_code == 503  # no line, no answer: not even a 400
        with app_client.stream(
            "POST", "/v1/chat/completions", content=_body()[:-1] + ',"stream":true}'
        ) as resp:
            assert resp.status_code == 200
            events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
        ready = app_client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["stages"]["audit"] is False
        assert app_client.get("/v2/health/ready").status_code == 503
    assert "[DONE]" not in events
    *chunks, last = [json.loads(e) for e in events]
    assert last["error"]["code"] == "audit_unavailable"
    assert not any(c["choices"][0]["finish_reason"] for c in chunks)
    assert len(_records(app_client.pipeline)) == 1  # type: ignore[attr-defined]
    assert app_client.get("/readyz").status_code == 200


def _client(pipeline: Pipeline) -> TestClient:
    async def readiness() -> dict[str, bool]:
        return {"audit": await pipeline.audit.ready()}

    client = TestClient(create_api(pipeline, readiness))
    client.pipeline = pipeline  # type: ignore[attr-defined]
    return client


def test_a_read_only_audit_log_is_refused_before_generating(tmp_path: Path, guard: LocalGuard) -> None:
    pipeline = _pipeline(tmp_path, guard, status_ttl_s=0)  # every request asks
    with _client(pipeline) as client:
        assert client.post("/v1/chat/completions", content=_body()).status_code == 200
        with read_only(pipeline.config.audit.path):
            plain = client.post("/v1/chat/completions", content=_body())
            stream = client.post("/v1/chat/completions", content=_body()[:-1] + ',"stream":true}')
        again = client.post("/v1/chat/completions", content=_body())
    for resp in (plain, stream):  # a stream too is refused before its first chunk: a plain 503, not an event
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "audit_unavailable", resp.text
        assert "Retry-After" in resp.headers
    assert again.status_code == 200
    assert pipeline.generator.calls == 2  # type: ignore[attr-defined] # nothing generated while refused
    assert [r["status"] for r in _records(pipeline)] == [200, 200]  # the refusals could not be written


def test_a_refusal_up_front_is_audited_when_its_line_fits(tmp_path: Path, guard: LocalGuard) -> None:
    # Less free space than the margin (no file system has 2**62 bytes free), but a short line still fits.
    pipeline = _pipeline(tmp_path, guard, status_ttl_s=0, refuse_below_free_bytes=2**62)
    with _client(pipeline) as client:
        resp = client.post(
            "/v1/chat/completions", content=_body(content="Where is my card 4111 1111 1111 1111?")
        )
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "audit_unavailable"
    assert pipeline.generator.calls == 0  # type: ignore[attr-defined]
    [record] = _records(pipeline)
    assert (record["status"], record["error"], record["output"]) == (503, "audit_unavailable", None)
    assert "4111" not in record["input"] and record["input"]  # guarded before the check, masked in the line


def test_a_stream_ends_with_done_after_its_line(app_client: TestClient) -> None:
    with app_client.stream("POST", "/v1/chat/completions", content=_body()[:-1] + ',"stream":true}') as resp:
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    [record] = _records(app_client.pipeline)  # type: ignore[attr-defined]
    assert record["status"] == 200 and record["output"] == _text([json.loads(e) for e in events[:-1]])


# ---- a real client that hangs up mid-answer (uvicorn on a socket) ----


def _free_port() -> int:
    for port in range(8160, 8170):  # this worktree's ports
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port in 8160-8169")


def test_a_client_that_hangs_up_leaves_one_line_with_what_it_got(tmp_path: Path, guard: LocalGuard) -> None:
    import uvicorn

    pipeline = _pipeline(tmp_path, guard, hold=True)

    async def readiness() -> dict[str, bool]:
        return {}

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_api(pipeline, readiness), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + DEADLOCK_GUARD_S
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        received: list[dict] = []
        with httpx.Client(timeout=DEADLOCK_GUARD_S) as client:
            with client.stream(
                "POST",
                f"http://127.0.0.1:{port}/v1/chat/completions",
                content=_body()[:-1] + ',"stream":true}',
            ) as resp:
                for line in resp.iter_lines():
                    if line.startswith("data: "):
                        received.append(json.loads(line[6:]))
                    if _text(received):
                        break  # hang up mid-answer
        while not _records(pipeline) and time.monotonic() < deadline:
            time.sleep(0.05)
        [record] = _records(pipeline)
        assert record["status"] == 499 and record["output"].startswith(_text(received))
    finally:
        server.should_exit = True
        thread.join(timeout=DEADLOCK_GUARD_S)
