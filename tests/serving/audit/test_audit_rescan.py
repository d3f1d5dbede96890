"""The audit log's optional re-scan with the real PII guard: mask what a caller left in, or refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from finserve.serving.audit import AuditConfig, AuditLog, AuditRefused, OnPII, read_records, verify_chain
from finserve.serving.guard import GuardConfig, PIIGuard


def _lines(path: Path) -> list[dict]:
    return list(read_records(path))


@pytest.fixture(scope="module")
def rescan_guard() -> PIIGuard:
    return PIIGuard(GuardConfig())


def test_rescan_masks_pii_the_caller_left_in(log_path: Path, make_record, rescan_guard: PIIGuard) -> None:
    log = AuditLog(AuditConfig(path=log_path), guard=rescan_guard)
    log.append(make_record(input="card 4111 1111 1111 1111", output="mail jane@example.com", error=None))
    raw = log_path.read_text(encoding="utf-8")
    assert "4111" not in raw and "jane@example.com" not in raw
    [line] = _lines(log_path)
    assert line["input"] == "card <CREDIT_CARD>"
    assert line["output"] == "mail <EMAIL_ADDRESS>"
    assert line["pii"] == {"input": {"CREDIT_CARD": 1}, "audit": {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1}}
    assert verify_chain(log_path).ok


def test_rescan_leaves_masked_records_alone(log_path: Path, make_record, rescan_guard: PIIGuard) -> None:
    log = AuditLog(AuditConfig(path=log_path), guard=rescan_guard)
    record = make_record()
    log.append(record)
    [line] = _lines(log_path)
    assert {k: v for k, v in line.items() if k not in ("hash", "prev_hash", "seq")} == record.model_dump(
        mode="json"
    )


def test_rescan_can_refuse(log_path: Path, make_record, rescan_guard: PIIGuard) -> None:
    log = AuditLog(AuditConfig(path=log_path, on_pii=OnPII.refuse), guard=rescan_guard)
    with pytest.raises(AuditRefused) as info:
        log.append(make_record(error="lookup failed for ssn 536-22-8145"))
    assert info.value.entity_types == ["US_SSN"]
    assert "536" not in str(info.value)
    assert _lines(log_path) == []
