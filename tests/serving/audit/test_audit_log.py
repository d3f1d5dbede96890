"""AuditLog on a real file: chaining, checkpoints, concurrent writers, record validation (tampering: test_audit_tamper.py)."""

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
    CheckpointKeyError,
    FsyncPolicy,
    read_key,
    read_records,
    verify_chain,
)
from finserve.serving.audit.layout import head_file


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_append_chains_lines(audit_log: AuditLog, log_path: Path, make_record) -> None:
    hashes = [audit_log.append(make_record(request_id=f"req-{i}")) for i in range(3)]
    opening, *lines = _lines(log_path)
    assert opening["kind"] == "checkpoint" and (opening["seq"], opening["lines"]) == (1, 0)
    assert opening["prev_hash"] == opening["head"] == GENESIS_HASH
    assert [line["hash"] for line in lines] == hashes
    assert [line["seq"] for line in lines] == [2, 3, 4]
    assert [line["prev_hash"] for line in lines] == [opening["hash"], hashes[0], hashes[1]]
    assert lines[0]["request_id"] == "req-0" and lines[0]["time"] == "2026-01-02T03:04:05Z"
    assert lines[0]["pii"] == {"input": {"CREDIT_CARD": 1}}
    assert [r["request_id"] for r in read_records(log_path)] == ["req-0", "req-1", "req-2"]
    report = verify_chain(log_path)
    assert report.ok and report.lines == 4 and report.head_hash == hashes[-1]


def test_log_and_key_files_are_private(audit_log: AuditLog, log_path: Path, make_record) -> None:
    audit_log.append(make_record())
    assert log_path.stat().st_mode & 0o077 == 0
    assert audit_log.config.key_path().stat().st_mode & 0o077 == 0
    assert audit_log.config.key_path().read_text().strip() not in log_path.read_text()


def test_appending_continues_an_existing_chain(log_path: Path, make_record) -> None:
    first = AuditLog(AuditConfig(path=log_path)).append(make_record(request_id="a"))
    AuditLog(AuditConfig(path=log_path)).append(make_record(request_id="b"))
    assert _lines(log_path)[2]["prev_hash"] == first
    assert verify_chain(log_path).ok


def test_empty_and_missing_logs(log_path: Path) -> None:
    missing = verify_chain(log_path)
    assert not missing.ok and "does not exist" in (missing.reason or "")
    log_path.parent.mkdir(parents=True)
    log_path.touch()
    empty = verify_chain(log_path)
    assert empty.ok and empty.lines == 0 and empty.head_hash == GENESIS_HASH


def test_checkpoints_every_n_lines_and_at_close(log_path: Path, make_record) -> None:
    log = AuditLog(AuditConfig(path=log_path, checkpoint_every=3))
    for i in range(5):
        log.append(make_record(request_id=f"r{i}"))
    log.close()
    log.close()  # idempotent: the log is already sealed
    kinds = [(line["seq"], line.get("kind", "record")) for line in _lines(log_path)]
    assert kinds == [
        (1, "checkpoint"),
        (2, "record"),
        (3, "record"),
        (4, "checkpoint"),
        (5, "record"),
        (6, "record"),
        (7, "checkpoint"),
        (8, "record"),
        (9, "checkpoint"),
    ]
    assert _lines(log_path)[-1]["final"] is True
    assert json.loads(head_file(log_path).read_text()) == _lines(log_path)[-1]
    # A new writer resumes the sealed log with a fresh (not final) checkpoint first.
    AuditLog(AuditConfig(path=log_path, checkpoint_every=3)).append(make_record(request_id="r5"))
    assert [(line.get("kind"), line.get("final")) for line in _lines(log_path)[-2:]] == [
        ("checkpoint", False),
        (None, None),
    ]
    assert verify_chain(log_path, read_key(log.config.key_path())).ok


def test_a_missing_configured_key_is_an_error(log_path: Path) -> None:
    with pytest.raises(CheckpointKeyError):
        AuditLog(AuditConfig(path=log_path, checkpoint_key_file=log_path.parent / "nope.key"))


def test_garbage_last_line_is_reported_not_chained_to(
    audit_log: AuditLog, log_path: Path, make_record
) -> None:
    audit_log.append(make_record())
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write("not json\n")
    report = verify_chain(log_path)
    assert (report.first_bad_line, report.lines) == (3, 3)
    assert "not valid JSON" in (report.reason or "")
    with pytest.raises(AuditLogCorrupt):
        audit_log.append(make_record())
    assert audit_log.ready() is False


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
    assert report.ok and len(list(read_records(log_path))) == 80


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
    assert report.ok and report.lines == 201  # the opening checkpoint and 200 records
    ids = [line["request_id"] for line in read_records(log_path)]
    assert sorted(ids) == sorted(f"p{n}-{i}" for n in range(4) for i in range(50))


# The new key file and the head file (written at each checkpoint: here the opening one) are always synced.
@pytest.mark.parametrize(("policy", "syncs"), [(FsyncPolicy.always, 5), (FsyncPolicy.never, 2)])
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
            {"route": "sideways"},
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
