"""What happens when the disk misbehaves: torn tails are sealed, failed writes leave no trace and say
so, and readiness tells the truth. Real failures: an immutable file, /dev/full (ENOSPC), a file-size
limit that cuts a write short in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from readonly import read_only

from finserve.serving.audit import (
    AuditConfig,
    AuditLog,
    AuditWriteFailed,
    read_key,
    read_records,
    verify_chain,
)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _torn(audit_log: AuditLog, log_path: Path, make_record) -> bytes:
    """Two records, then half a line as a write cut short would leave it."""
    audit_log.append(make_record(request_id="a"))
    audit_log.append(make_record(request_id="b"))
    fragment = b'{"time":"2026-01-02T03:04:05Z","request_id":"c","tena'
    with open(log_path, "ab") as fh:
        fh.write(fragment)
    assert not verify_chain(log_path).ok
    return fragment


def _assert_sealed(log_path: Path, fragment: bytes, key: bytes) -> None:
    seal = next(line for line in _read(log_path) if line.get("kind") == "seal")
    assert seal["torn_bytes"] == len(fragment)
    assert verify_chain(log_path, key).ok
    assert log_path.read_bytes().endswith(b"\n")


def test_torn_tail_is_sealed_on_start(audit_log: AuditLog, log_path: Path, make_record) -> None:
    fragment = _torn(audit_log, log_path, make_record)
    restarted = AuditLog(AuditConfig(path=log_path))
    _assert_sealed(log_path, fragment, read_key(restarted.config.key_path()))
    restarted.append(make_record(request_id="d"))
    assert [r["request_id"] for r in read_records(log_path)] == ["a", "b", "d"]


def test_torn_tail_is_sealed_on_the_next_append(audit_log: AuditLog, log_path: Path, make_record) -> None:
    fragment = _torn(audit_log, log_path, make_record)
    audit_log.append(make_record(request_id="d"))
    _assert_sealed(log_path, fragment, read_key(audit_log.config.key_path()))
    assert [r["request_id"] for r in read_records(log_path)] == ["a", "b", "d"]


def test_torn_tail_is_sealed_by_the_readiness_check(audit_log: AuditLog, log_path: Path, make_record) -> None:
    fragment = _torn(audit_log, log_path, make_record)
    assert audit_log.ready() is True
    _assert_sealed(log_path, fragment, read_key(audit_log.config.key_path()))


def test_a_file_that_is_only_a_torn_line(log_path: Path, make_record) -> None:
    log_path.parent.mkdir(parents=True)
    log_path.write_bytes(b'{"time":"2026')
    log = AuditLog(AuditConfig(path=log_path))
    log.append(make_record(request_id="a"))
    assert [line.get("kind", "record") for line in _read(log_path)] == ["checkpoint", "seal", "record"]
    assert verify_chain(log_path, read_key(log.config.key_path())).ok


_CUT_SHORT = textwrap.dedent("""
    import resource, signal, sys
    from pathlib import Path
    from finserve.serving.audit import AuditConfig, AuditLog, AuditRecord, AuditWriteFailed
    path = Path(sys.argv[1])
    log = AuditLog(AuditConfig(path=path))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG, as a full disk gives ENOSPC
    size = path.stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, resource.RLIM_INFINITY))
    try:
        log.append(AuditRecord(request_id="big", tenant="t", model="m", input="x" * 5000, status=200,
                               latency_ms=1.0))
    except AuditWriteFailed as exc:
        print("failed:", exc)
    print("size", path.stat().st_size, size)
""")


def test_a_write_cut_short_is_taken_back(audit_log: AuditLog, log_path: Path, make_record) -> None:
    audit_log.append(make_record(request_id="a"))
    done = subprocess.run(
        [sys.executable, "-P", "-c", _CUT_SHORT, str(log_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "failed: cannot write the audit log" in done.stdout, done.stdout + done.stderr
    after, before = done.stdout.split("size ")[1].split()
    assert after == before  # the partial line was truncated away at once
    audit_log.append(make_record(request_id="b"))
    assert [r["request_id"] for r in read_records(log_path)] == ["a", "b"]
    assert verify_chain(log_path, read_key(audit_log.config.key_path())).ok


def test_read_only_file_fails_the_append_and_readiness(
    audit_log: AuditLog, log_path: Path, make_record
) -> None:
    audit_log.append(make_record(request_id="a"))
    before = log_path.read_bytes()
    with read_only(log_path):
        with pytest.raises(AuditWriteFailed, match="cannot write the audit log"):
            audit_log.append(make_record(request_id="b"))
        assert audit_log.ready() is False
        assert "cannot write" in (audit_log.problem() or "")
    assert log_path.read_bytes() == before
    assert audit_log.ready() is True
    audit_log.append(make_record(request_id="c"))
    assert [r["request_id"] for r in read_records(log_path)] == ["a", "c"]


def test_full_disk_fails_the_append(tmp_path: Path, make_record) -> None:
    path = tmp_path / "audit.jsonl"
    path.symlink_to("/dev/full")  # every write: ENOSPC
    log = AuditLog(AuditConfig(path=path, checkpoint_key_file=None))
    with pytest.raises(AuditWriteFailed, match="No space left"):
        log.append(make_record())


def test_low_free_space_fails_readiness(log_path: Path) -> None:
    log = AuditLog(AuditConfig(path=log_path, min_free_bytes=2**62))
    assert log.ready() is False
    assert "free" in (log.problem() or "")


def test_a_log_from_before_line_numbers_is_moved_aside_and_a_signed_chain_starts(
    log_path: Path, make_record
) -> None:
    """An upgrade must not turn every request into a 503: the old hash chain is kept whole beside the new log."""
    from finserve.serving.audit.chain import GENESIS_HASH, chain_line

    log_path.parent.mkdir(parents=True)
    prev, lines = GENESIS_HASH, []
    for rid in ("old-1", "old-2"):  # what finserve wrote before seq numbers and checkpoints
        line, prev = chain_line(make_record(request_id=rid).model_dump(mode="json"), prev)
        lines.append(line)
    legacy_bytes = ("\n".join(lines) + "\n").encode()
    log_path.write_bytes(legacy_bytes)

    audit_log = AuditLog(AuditConfig(path=log_path))
    assert audit_log.problem() is None  # readiness moves it aside instead of failing
    audit_log.append(make_record(request_id="new-1"))

    [legacy] = list(log_path.parent.glob("audit.legacy-*.jsonl"))
    assert legacy.read_bytes() == legacy_bytes
    assert [r["request_id"] for r in read_records(log_path)] == ["new-1"]
    assert verify_chain(log_path, read_key(audit_log.config.key_path())).ok
