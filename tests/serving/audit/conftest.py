"""Audit log fixtures: a log file in a temp dir and a record factory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from finserve.serving.audit import AuditConfig, AuditLog, AuditRecord

RecordFactory = Callable[..., AuditRecord]


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.jsonl"


@pytest.fixture
def audit_log(log_path: Path) -> AuditLog:
    return AuditLog(AuditConfig(path=log_path))


@pytest.fixture
def make_record() -> RecordFactory:
    def make(**fields: object) -> AuditRecord:
        base: dict[str, object] = {
            "time": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            "request_id": "req-1",
            "tenant": "acme",
            "model": "finserve-banking",
            "adapter": "banking@1.2.0",
            "intent": "card_arrival",
            "input": "my card <CREDIT_CARD> has not arrived",
            "output": "Cards arrive within 5 working days.",
            "pii": {"input": {"CREDIT_CARD": 1}},
            "status": 200,
            "error": None,
            "latency_ms": 812.5,
        }
        return AuditRecord.model_validate({**base, **fields})

    return make
