"""The outage log's decisions (pure, fake clock) and its lines; the pymilvus filter on a real pymilvus logger.
(A real Milvus Lite outage: test_retrieval_milvus_down.py.)"""

from __future__ import annotations

import logging

import pytest

from finserve.serving.retrieval.errors import VectorStoreUnavailable
from finserve.serving.retrieval.outage import OutageLog, OutageState
from finserve.serving.retrieval.pymilvus_logs import FILTER, quiet_pymilvus


def test_one_start_then_a_reminder_per_interval_then_the_end() -> None:
    state = OutageState(remind_s=60)
    assert state.on_success(0.0) is None  # no outage: nothing to end
    assert state.on_failure(100.0) == "start"
    assert [state.on_failure(100.0 + t) for t in (1, 30, 59)] == [None, None, None]
    assert state.on_failure(160.0) == "remind" and state.failures == 5
    assert state.on_failure(200.0) is None
    assert state.on_failure(220.0) == "remind"
    assert state.on_success(230.0) == pytest.approx(130.0)
    assert state.on_success(231.0) is None
    assert state.on_failure(300.0) == "start" and state.failures == 1  # a new outage starts over


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _milvus_error() -> VectorStoreUnavailable:
    from pymilvus.exceptions import MilvusException

    try:
        try:
            raise MilvusException(code=2, message="Fail connecting to server on 127.0.0.1:1")
        except MilvusException as inner:
            raise VectorStoreUnavailable(f"Milvus search failed: {inner}") from inner
    except VectorStoreUnavailable as exc:
        return exc


def test_lines_name_the_error_class_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="finserve.serving.retrieval.outage")
    clock = Clock()
    outage = OutageLog("Milvus", 60, clock)
    for t in range(0, 130, 2):
        clock.now = float(t)
        outage.failed(_milvus_error())
    clock.now = 131.0
    outage.succeeded()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "WARNING", "WARNING", "INFO"]
    assert lines[0][1].startswith("Milvus unavailable (MilvusException: ")
    assert "still unavailable after 60 s, 31 failed calls" in lines[1][1]
    assert lines[3][1] == "Milvus available again after 131.0 s"
    assert not any(r.exc_info for r in caplog.records) and "Traceback" not in str(lines)


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_pymilvus_error_records_are_dropped_unless_pymilvus_is_debugged() -> None:
    import pymilvus.decorators  # noqa: F401 - creates the logger that writes the per-call tracebacks

    quiet_pymilvus()
    # pymilvus configures its own "pymilvus" logger (stderr handler, no propagation): what it would print.
    root, kept = logging.getLogger("pymilvus"), Kept()
    root.addHandler(kept)
    before = FILTER.dropped
    calls = logging.getLogger("pymilvus.decorators")
    try:
        calls.error("RPC error: [search], <MilvusException: (code=2)>\nTraceback:\n...")
        calls.warning("[search] retry:3, cost: 0.81s, reason: <_InactiveRpcError: UNAVAILABLE>")
        assert kept.records == [] and FILTER.dropped == before + 2
        level = root.level
        root.setLevel(logging.DEBUG)  # someone debugging pymilvus itself sees everything
        try:
            calls.error("RPC error while debugging pymilvus")
        finally:
            root.setLevel(level)
    finally:
        root.removeHandler(kept)
    assert [r.getMessage() for r in kept.records] == ["RPC error while debugging pymilvus"]
