"""Rotation by size and by day with the chain continuing across files, and purge for retention."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from finserve.serving.audit import AuditConfig, AuditLog, read_key, read_records, verify_chain
from finserve.serving.audit.chain import line_hash
from finserve.serving.audit.layout import rotated_files


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class Clock:
    """Injected time: days pass when a test says so."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_rotation_by_size_continues_the_chain(log_path: Path, make_record) -> None:
    log = AuditLog(AuditConfig(path=log_path, rotate_max_bytes=2000))
    for i in range(10):
        log.append(make_record(request_id=f"req-{i}"))
    files = rotated_files(log_path) + [log_path]
    assert len(files) >= 3
    for before, after in zip(files, files[1:], strict=False):
        opening = _read(after)[0]
        assert opening["kind"] == "checkpoint"
        assert opening["prev_hash"] == opening["head"] == _read(before)[-1]["hash"]
        assert opening["seq"] == _read(before)[-1]["seq"] + 1
    assert [r["request_id"] for r in read_records(log_path)] == [f"req-{i}" for i in range(10)]
    report = verify_chain(log_path, read_key(log.config.key_path()))
    assert report.ok and report.files == len(files), report


def test_rotation_by_day(log_path: Path, make_record) -> None:
    clock = Clock(datetime(2026, 3, 1, 23, 0, tzinfo=UTC))
    log = AuditLog(AuditConfig(path=log_path), clock=clock)
    log.append(make_record(request_id="day1-a"))
    log.append(make_record(request_id="day1-b"))
    assert rotated_files(log_path) == []
    clock.now += timedelta(hours=2)  # past midnight UTC
    log.append(make_record(request_id="day2-a"))
    [day1] = rotated_files(log_path)
    assert [r["request_id"] for r in _read(day1) if "kind" not in r] == ["day1-a", "day1-b"]
    assert [r["request_id"] for r in _read(log_path) if "kind" not in r] == ["day2-a"]
    assert verify_chain(log_path, read_key(log.config.key_path())).ok


@pytest.fixture
def four_days(log_path: Path, make_record) -> tuple[AuditLog, Clock]:
    """Files of 1, 2 and 3 March rotated away, 4 March active."""
    clock = Clock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    log = AuditLog(AuditConfig(path=log_path), clock=clock)
    for day in range(4):
        for i in range(3):
            log.append(make_record(request_id=f"d{day + 1}-{i}"))
        clock.now += timedelta(days=1)
    assert len(rotated_files(log_path)) == 3
    return log, clock


def test_purge_removes_old_files_and_the_rest_verifies_from_a_checkpoint(four_days, log_path: Path) -> None:
    log, _ = four_days
    names = [p.name for p in rotated_files(log_path)]
    # A file counts as old once its successor opened (the first line of the next day, here at noon).
    report = log.purge(datetime(2026, 3, 3, 13, 0, tzinfo=UTC))
    assert report.removed == names[:2]  # 1 and 2 March
    ids = [r["request_id"] for r in read_records(log_path)]
    assert ids == [f"d{d}-{i}" for d in (3, 4) for i in range(3)]
    key = read_key(log.config.key_path())
    verified = verify_chain(log_path, key)
    assert verified.ok, verified
    assert verified.starts_at == report.first_kept_line > 1
    purge = _read(log_path)[-1]
    assert purge["kind"] == "purge" and purge["files"] == report.removed
    log.close()
    assert verify_chain(log_path, key).ok


def test_purge_never_removes_the_active_file_or_skips_a_kept_one(four_days, log_path: Path) -> None:
    log, _ = four_days
    names = [p.name for p in rotated_files(log_path)]
    assert names[0] == "audit.000000001.jsonl"  # named after their first line
    assert log.purge(datetime(2030, 1, 1, tzinfo=UTC)).removed == names
    assert log_path.exists() and [r["request_id"] for r in read_records(log_path)][0] == "d4-0"
    assert log.purge(datetime(2030, 1, 1, tzinfo=UTC)).removed == []
    assert verify_chain(log_path, read_key(log.config.key_path())).ok


def test_purge_then_a_tampered_start_is_found(four_days, log_path: Path) -> None:
    log, _ = four_days
    assert log.purge(datetime(2026, 3, 3, 13, 0, tzinfo=UTC)).removed
    first = rotated_files(log_path)[0]
    lines = _read(first)
    body = {k: v for k, v in lines[0].items() if k != "hash"}
    body["mac"] = "0" * 64  # the opening checkpoint the purged log starts from, its hash recomputed
    lines[0] = {
        **body,
        "hash": line_hash({k: v for k, v in body.items() if k != "prev_hash"}, body["prev_hash"]),
    }
    first.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = verify_chain(log_path, read_key(log.config.key_path()))
    assert not report.ok and "signature" in (report.reason or "")
