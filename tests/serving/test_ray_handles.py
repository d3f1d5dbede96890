"""The one adapter between the pipeline's stage interfaces and Ray: a DeploymentHandle seen as its deployment.

The handle is a stand-in that records each ``.remote`` call (a fake: no Ray cluster runs here; real handles
carry the same calls in the slow tests that run the Ray Serve graph, tests/serving/test_e2e_stack.py and
``ray_served``). The deployment classes are the real ones, read for their methods only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from finserve.contracts import AdapterRef
from finserve.contracts.telemetry import bind_request_fields, reset_request_fields
from finserve.serving.app import AuditDeployment, GeneratorDeployment, GuardDeployment, RetrieverDeployment
from finserve.serving.audit import AuditConfig, AuditRecord, read_records
from finserve.serving.guard.config import GuardConfig
from finserve.serving.inference.types import ChatMessage, GenerationRequest, StreamChunk
from finserve.serving.ray_handles import remote


class Handle:
    """Records (method, args, kwargs, streaming) for every ``handle.method.remote(...)``."""

    def __init__(
        self, calls: list[tuple[str, tuple, dict, bool]] | None = None, stream: bool = False
    ) -> None:
        self.calls = [] if calls is None else calls
        self.streaming = stream

    def options(self, *, stream: bool = False) -> Handle:
        return Handle(self.calls, stream)

    def __getattr__(self, name: str) -> Any:
        handle = self

        class Method:
            def remote(self, *args: Any, **kwargs: Any) -> Any:
                handle.calls.append((name, args, kwargs, handle.streaming))
                return handle._stream(args) if handle.streaming else handle._answer(name, args)

        return Method()

    async def _answer(self, name: str, args: tuple) -> Any:
        return (name, args)

    async def _stream(self, args: tuple) -> AsyncIterator[StreamChunk]:
        for word in ("Soon", "."):
            yield StreamChunk(delta=word)


CARD = "4111 1111 1111 1111"
REQUEST = GenerationRequest(messages=[ChatMessage(role="user", content="Where is my card?")])


async def test_traced_methods_take_the_callers_context_along_and_others_do_not() -> None:
    handle = Handle()
    token = bind_request_fields(lambda: {"request_id": "r-42"})
    try:
        assert await remote(handle, GuardDeployment).scan_chunks(["a chunk"]) == (
            "scan_chunks",
            (["a chunk"],),
        )
        await remote(handle, RetrieverDeployment).knowledge_texts()
        await remote(handle, GeneratorDeployment).head_scores("masked", AdapterRef.base())
    finally:
        reset_request_fields(token)
    (_, _, chunks, _), (_, _, texts, _), (_, args, head, _) = handle.calls
    assert chunks == {"_otel": {"finserve.log": {"request_id": "r-42"}}}
    assert texts == {}  # knowledge_texts is no traced method: it takes no _otel
    assert args == ("masked", AdapterRef.base()) and "_otel" in head


async def test_an_async_generator_method_is_a_stream() -> None:
    handle = Handle()
    chunks = [c.delta async for c in remote(handle, GeneratorDeployment).stream(REQUEST)]
    assert chunks == ["Soon", "."]
    [(name, args, kwargs, streaming)] = handle.calls
    assert (name, args, streaming) == ("stream", (REQUEST,), True) and "_otel" in kwargs


async def test_audit_close_over_a_handle_seals_nothing_and_stopping_the_replica_does(tmp_path: Path) -> None:
    # The deployment called directly, as a replica runs it: real AuditLog, real Presidio re-scan.
    config = AuditConfig(path=tmp_path / "audit.jsonl").model_dump(mode="json")
    replica = AuditDeployment(config, GuardConfig().model_dump(mode="json"))
    record = AuditRecord(
        request_id="r1", tenant="acme", model="m", input=f"card {CARD}", status=200, latency_ms=1.0
    )
    await replica.append(record, _otel={})  # type: ignore[call-arg]  # @traced's keyword
    await replica.close()  # what a gateway's adapter would send: gateways share this log
    assert not _sealed(tmp_path / "audit.jsonl")
    replica.__del__()  # Ray Serve stopping the replica
    assert _sealed(tmp_path / "audit.jsonl")
    [line] = read_records(tmp_path / "audit.jsonl")
    assert CARD not in line["input"]  # the audit replica's own guard masked it


def _sealed(path: Path) -> bool:
    last = json.loads(path.read_text().splitlines()[-1])
    return last.get("kind") == "checkpoint" and last.get("final") is True


async def test_the_guard_replica_scans_off_its_event_loop_and_caches_chunks() -> None:
    # The deployment called directly, as a replica runs it, with the real Presidio guard.
    replica = GuardDeployment(GuardConfig().model_dump(mode="json"))
    threads: list[threading.Thread] = []
    scanned: list[str] = []
    scan_many, scan_chunks = replica.guard.scan_many, replica.chunks._scan_many

    def spy_many(texts: list[str]) -> Any:  # spies: the real scans run
        threads.append(threading.current_thread())
        return scan_many(texts)

    def spy_chunks(texts: list[str]) -> Any:
        scanned.extend(texts)
        return scan_chunks(texts)

    replica.guard.scan_many = spy_many  # type: ignore[method-assign]
    replica.chunks._scan_many = spy_chunks
    [masked] = await replica.scan_many([f"card {CARD}"], _otel={})  # type: ignore[call-arg]
    assert CARD not in masked.text and threads[0] is not threading.current_thread()
    chunk = "Cards arrive within 5 working days."
    for _ in range(2):
        [result] = await replica.scan_chunks([chunk], _otel={})  # type: ignore[call-arg]
        assert result.text == chunk
    assert scanned == [chunk]  # the second call came from the chunk cache


def test_what_is_not_an_async_method_of_the_deployment_is_refused() -> None:
    adapter = remote(Handle(), GeneratorDeployment)
    with pytest.raises(TypeError, match="queue_depth is not async"):
        adapter.queue_depth  # noqa: B018 - the lookup is what fails
    with pytest.raises(AttributeError):
        adapter.no_such_method  # type: ignore[attr-defined]  # noqa: B018
