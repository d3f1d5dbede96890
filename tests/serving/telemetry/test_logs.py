"""FINSERVE_LOG_FORMAT=json: a request's log lines are JSON objects carrying its ids, never its text.

Real guard, router, audit log and HTTP app; the generator is a stand-in that fails (the path that logs),
retrieval a scripted one (see test_tracing.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_tracing import CARD, TRACE_ID, TRACEPARENT, Retrieval

from finserve.contracts.telemetry import configure_logging
from finserve.serving.audit import AuditConfig, AuditLog
from finserve.serving.config import DEFAULT_MODEL, ServingConfig
from finserve.serving.gateway import create_api
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.inference.types import GenerationRequest
from finserve.serving.pipeline import Pipeline
from finserve.serving.routing import Router
from finserve.serving.stages import LocalAudit, LocalGuard


class FailingGenerator:
    async def generate(self, request: GenerationRequest):  # noqa: ANN201
        raise RuntimeError("engine crashed")  # an internal error: the gateway logs it with its traceback


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """finserve's loggers switched to JSON for this test, then put back as they were."""
    names = ("finserve", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {
        n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate, logging.getLogger(n).level)
        for n in names
    }
    monkeypatch.setenv("FINSERVE_LOG_FORMAT", "json")
    yield
    for n, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(n)
        logger.handlers[:] = handlers
        logger.propagate, logger.level = propagate, level


def test_a_failed_requests_lines_are_json_with_its_ids_and_no_content(
    tmp_path: Path, json_logs: None, capsys: pytest.CaptureFixture[str], spans
) -> None:
    cfg = ServingConfig()
    cfg.audit = AuditConfig(path=tmp_path / "audit.jsonl")
    # policy error: the failure is answered as one (with the fallback policy it would be a degraded 200).
    cfg.degrade = cfg.degrade.model_copy(update={"policy": "error"})
    pipeline = Pipeline(
        cfg,
        guard=LocalGuard(PIIGuard(cfg.guard)),
        retrieval=Retrieval(),
        intent=None,  # type: ignore[arg-type]
        generator=FailingGenerator(),
        audit=LocalAudit(AuditLog(cfg.audit)),  # type: ignore[arg-type]
        router=Router(cfg.router),
    )

    async def ready() -> dict[str, bool]:
        return {"all": True}

    client = TestClient(create_api(pipeline, ready))  # configures logging from FINSERVE_LOG_FORMAT
    capsys.readouterr()
    resp = client.post(
        "/v1/chat/completions",
        headers={"traceparent": TRACEPARENT, "x-request-id": "req-42"},
        json={"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": f"Card {CARD} lost"}]},
    )
    assert resp.status_code == 500
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    [failed] = [line for line in lines if line["message"] == "request req-42 failed"]
    assert failed["level"] == "ERROR" and failed["logger"] == "finserve.serving.gateway"
    assert (failed["request_id"], failed["trace_id"], failed["tenant"]) == ("req-42", TRACE_ID, "default")
    assert failed["adapter_version"] == "base@0.0.0" and failed["exc_type"] == "RuntimeError"
    assert CARD not in err and CARD.replace(" ", "") not in err
    # The failed stage's span names the exception's class only: messages can quote content, spans leave the process.
    [generate] = [sp for sp in spans.get_finished_spans() if sp.name == "finserve.generate"]
    assert generate.status.status_code.name == "ERROR" and generate.attributes["error.type"] == "RuntimeError"
    assert not any(ev.name == "exception" for sp in spans.get_finished_spans() for ev in sp.events)


def test_the_log_format_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSERVE_LOG_FORMAT", "yaml")
    with pytest.raises(ValueError, match="FINSERVE_LOG_FORMAT"):
        configure_logging()
