"""AuditLog on a real file: chaining, verification, tampering, concurrent writers, record validation."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from finserve.serving.audit import (
    GENESIS_HASH,
    AuditConfig,
    AuditLog,
    AuditLogCorrupt,
    AuditRecord,
    FsyncPolicy,
    verify_chain,
)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _write_lines(path: Path, lines: list[dict]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


def test_append_chains_lines(audit_log: AuditLog, log_path: Path, make_record) -> None:
    hashes = [audit_log.append(make_record(request_id=f"req-{i}")) for i in range(3)]
    lines = _lines(log_path)
    assert [line["hash"] for line in lines] == hashes
    assert [line["prev_hash"] for line in lines] == [GENESIS_HASH, hashes[0], hashes[1]]
    assert lines[0]["request_id"] == "req-0" and lines[0]["time"] == "2026-01-02T03:04:05Z"
    assert lines[0]["pii"] == {"input": {"CREDIT_CARD": 1}}
    report = verify_chain(log_path)
    assert report.ok and report.lines == 3 and report.head_hash == hashes[-1]


def test_log_file_is_private(audit_log: AuditLog, log_path: Path, make_record) -> None:
    audit_log.append(make_record())
    assert log_path.stat().st_mode & 0o077 == 0


def test_appending_continues_an_existing_chain(log_path: Path, make_record) -> None:
    first = AuditLog(AuditConfig(path=log_path)).append(make_record(request_id="a"))
    AuditLog(AuditConfig(path=log_path)).append(make_record(request_id="b"))
    assert _lines(log_path)[1]["prev_hash"] == first
    assert verify_chain(log_path).ok


def test_empty_and_missing_logs(log_path: Path) -> None:
    missing = verify_chain(log_path)
    assert not missing.ok and "does not exist" in (missing.reason or "")
    log_path.parent.mkdir(parents=True)
    log_path.touch()
    empty = verify_chain(log_path)
    assert empty.ok and empty.lines == 0 and empty.head_hash == GENESIS_HASH


@pytest.fixture
def five_lines(audit_log: AuditLog, log_path: Path, make_record) -> list[dict]:
    for i in range(5):
        audit_log.append(make_record(request_id=f"req-{i}", status=200 if i != 3 else 422))
    return _lines(log_path)


def test_edited_line_is_found(log_path: Path, five_lines: list[dict]) -> None:
    five_lines[2]["output"] = "something else"
    _write_lines(log_path, five_lines)
    report = verify_chain(log_path)
    assert (report.ok, report.first_bad_line) == (False, 3)
    assert "edited" in (report.reason or "")
    assert report.head_hash == five_lines[1]["hash"]


def test_edit_with_recomputed_hash_breaks_the_next_line(log_path: Path, five_lines: list[dict]) -> None:
    from finserve.serving.audit.chain import line_hash

    five_lines[1]["status"] = 500
    record = {k: v for k, v in five_lines[1].items() if k not in ("hash", "prev_hash")}
    five_lines[1]["hash"] = line_hash(record, five_lines[1]["prev_hash"])
    _write_lines(log_path, five_lines)
    report = verify_chain(log_path)
    assert (report.ok, report.first_bad_line) == (False, 3)
    assert "prev_hash" in (report.reason or "")


def test_deleted_line_is_found(log_path: Path, five_lines: list[dict]) -> None:
    _write_lines(log_path, five_lines[:2] + five_lines[3:])
    report = verify_chain(log_path)
    assert (report.ok, report.first_bad_line) == (False, 3)


def test_reordered_lines_are_found(log_path: Path, five_lines: list[dict]) -> None:
    five_lines[3], five_lines[4] = five_lines[4], five_lines[3]
    _write_lines(log_path, five_lines)
    assert verify_chain(log_path).first_bad_line == 4


def test_removed_first_line_is_found(log_path: Path, five_lines: list[dict]) -> None:
    _write_lines(log_path, five_lines[1:])
    assert verify_chain(log_path).first_bad_line == 1


def test_truncated_last_line_is_found_and_blocks_appends(
    audit_log: AuditLog, log_path: Path, five_lines: list[dict], make_record
) -> None:
    data = log_path.read_bytes()
    log_path.write_bytes(data[:-20])
    report = verify_chain(log_path)
    assert (report.ok, report.first_bad_line) == (False, 5)
    assert "incomplete" in (report.reason or "")
    with pytest.raises(AuditLogCorrupt):
        audit_log.append(make_record())


def test_garbage_line_is_found(log_path: Path, five_lines: list[dict]) -> None:
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write("not json\n")
    report = verify_chain(log_path)
    assert (report.first_bad_line, report.lines) == (6, 6)
    assert "not valid JSON" in (report.reason or "")


def test_threads_share_one_chain(audit_log: AuditLog, log_path: Path, make_record) -> None:
    def write(n: int) -> None:
        for i in range(20):
            audit_log.append(make_record(request_id=f"t{n}-{i}"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = verify_chain(log_path)
    assert report.ok and report.lines == 80


def _process_writer(path: str, n: int, count: int, start: object) -> None:
    log = AuditLog(AuditConfig(path=Path(path), fsync=FsyncPolicy.never))
    start.wait(timeout=60)  # type: ignore[attr-defined]  # all writers begin together
    for i in range(count):
        log.append(
            AuditRecord(
                request_id=f"p{n}-{i}", tenant="acme", model="m", input="<PERSON>", status=200, latency_ms=1.0
            )
        )


def test_processes_share_one_chain(log_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_process_writer, args=(str(log_path), n, 50, start)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    report = verify_chain(log_path)
    assert report.ok and report.lines == 200
    ids = [line["request_id"] for line in _lines(log_path)]
    assert sorted(ids) == sorted(f"p{n}-{i}" for n in range(4) for i in range(50))


@pytest.mark.parametrize(("policy", "syncs"), [(FsyncPolicy.always, 3), (FsyncPolicy.never, 0)])
def test_fsync_policy(
    log_path: Path, make_record, monkeypatch: pytest.MonkeyPatch, policy, syncs: int
) -> None:
    calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    log = AuditLog(AuditConfig(path=log_path, fsync=policy))
    for _ in range(3):
        log.append(make_record())
    assert len(calls) == syncs
    assert verify_chain(log_path).ok


class TestRecordValidation:
    def test_time_is_stored_in_utc(self, make_record) -> None:
        record = make_record(time=datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))))
        assert record.time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert record.model_dump(mode="json")["time"] == "2026-01-02T03:04:05Z"

    @pytest.mark.parametrize(
        "fields",
        [
            {"time": datetime(2026, 1, 2, 3, 4, 5)},  # naive
            {"adapter": "banking"},  # not NAME@VERSION
            {"status": 42},
            {"latency_ms": -1.0},
            {"pii": {"input": {"CREDIT_CARD": -1}}},
            {"error": 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>'},
            {"request_id": ""},
            {"extra": "field"},
        ],
    )
    def test_rejects(self, make_record, fields: dict[str, object]) -> None:
        with pytest.raises(ValidationError):
            make_record(**fields)

    def test_optional_fields(self, make_record) -> None:
        record = make_record(adapter=None, intent=None, output=None, error="pii_blocked", status=422)
        assert (record.adapter, record.output, record.error) == (None, None, "pii_blocked")

    def test_default_path_is_under_the_data_dir(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("FINSERVE_DATA_DIR", str(tmp_path))
        assert AuditConfig().path == tmp_path / "audit" / "audit.jsonl"
