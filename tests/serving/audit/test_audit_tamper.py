"""Tampering with a signed, rotated audit log: every kind of change is found, with the first bad line
and the last good checkpoint named.

The attacker here can write every file of the log (and its head file) but does not hold the
checkpoint key, which is the threat the signed checkpoints answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finserve.serving.audit import AuditConfig, AuditLog, read_key, verify_chain
from finserve.serving.audit.chain import line_hash
from finserve.serving.audit.layout import head_file, rotated_files


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _write(path: Path, lines: list[dict]) -> None:
    path.write_text(
        "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines), encoding="utf-8"
    )


def _rehash(lines: list[dict], prev: str) -> list[dict]:
    """Recompute every hash (and each checkpoint's lines/head) as an attacker without the key can."""
    out = []
    for line in lines:
        body = {k: v for k, v in line.items() if k not in ("hash", "prev_hash")}
        if body.get("kind") == "checkpoint":
            body["head"] = prev
        digest = line_hash(body, prev)
        out.append({**body, "prev_hash": prev, "hash": digest})
        prev = digest
    return out


@pytest.fixture
def sealed(log_path: Path, make_record) -> tuple[Path, bytes]:
    """A log of 12 records, a checkpoint every 4 lines, sealed at shutdown: seq 1..17 in one file."""
    log = AuditLog(AuditConfig(path=log_path, checkpoint_every=4))
    for i in range(12):
        log.append(make_record(request_id=f"req-{i}"))
    log.close()
    return log_path, read_key(log.config.key_path())


def _kinds(path: Path) -> list[str]:
    return [line.get("kind", "record") for line in _read(path)]


def test_the_untouched_log_verifies(sealed) -> None:
    path, key = sealed
    report = verify_chain(path, key)
    assert report.ok, report
    assert report.checkpoints_verified and report.unsigned_tail == 0
    assert report.last_good_checkpoint == report.lines == len(_read(path))
    assert _kinds(path)[-1] == "checkpoint"


def test_edited_line(sealed) -> None:
    path, key = sealed
    lines = _read(path)
    lines[5]["output"] = "something else"
    _write(path, lines)
    report = verify_chain(path, key)
    assert (report.ok, report.first_bad_line, report.bad_file_line) == (False, 6, 6)
    assert "edited" in (report.reason or "")
    assert report.last_good_checkpoint == 5  # seq 1 opens, seq 5 follows the 4th line


def test_edited_line_with_its_hash_recomputed(sealed) -> None:
    path, key = sealed
    lines = _read(path)
    lines[5]["status"] = 500
    lines[5] = _rehash([lines[5]], lines[5]["prev_hash"])[0]
    _write(path, lines)
    report = verify_chain(path, key)
    assert (report.ok, report.first_bad_line) == (False, 7)
    assert "prev_hash" in (report.reason or "")


def test_deleted_line(sealed) -> None:
    path, key = sealed
    lines = _read(path)
    _write(path, lines[:6] + lines[7:])
    report = verify_chain(path, key)
    assert (report.ok, report.first_bad_line) == (False, 7)


def test_reordered_lines(sealed) -> None:
    path, key = sealed
    lines = _read(path)
    lines[6], lines[7] = lines[7], lines[6]
    _write(path, lines)
    report = verify_chain(path, key)
    assert (report.ok, report.first_bad_line) == (False, 7)


def test_inserted_line(sealed) -> None:
    path, key = sealed
    lines = _read(path)
    forged = _rehash([{**lines[6], "request_id": "forged"}], lines[6]["hash"])[0]  # chained onto line 7
    _write(path, lines[:7] + [forged] + lines[7:])
    report = verify_chain(path, key)
    assert (report.ok, report.first_bad_line) == (False, 8)
    assert "line number" in (report.reason or "")


@pytest.mark.parametrize("cut", [1, 3, 8])
def test_truncated_tail(sealed, cut: int) -> None:
    path, key = sealed
    lines = _read(path)
    _write(path, lines[:-cut])
    for k in (key, None):  # the head file shows it, with or without the key
        report = verify_chain(path, k)
        assert (report.ok, report.first_bad_line) == (False, len(lines) - cut + 1)
        assert "truncated" in (report.reason or "")


def test_emptied_log(sealed) -> None:
    path, key = sealed
    path.write_text("")
    report = verify_chain(path, key)
    assert (report.ok, report.first_bad_line) == (False, 1)
    assert "truncated" in (report.reason or "")


def test_last_line_rehashed_and_the_final_checkpoint_dropped(sealed) -> None:
    path, key = sealed
    lines = _read(path)[:-1]
    lines[-1]["output"] = "rewritten"
    lines[-1] = _rehash([lines[-1]], lines[-1]["prev_hash"])[0]
    _write(path, lines)
    report = verify_chain(path, key)
    assert not report.ok and "truncated" in (report.reason or "")


def test_whole_chain_recomputed(sealed) -> None:
    """Edit line 10, recompute every hash after it and rewrite the head file: only the MACs remain wrong."""
    path, key = sealed
    lines = _read(path)
    lines[9]["output"] = "a different answer"
    lines = lines[:9] + _rehash(lines[9:], lines[8]["hash"])
    _write(path, lines)
    head_file(path).write_text(json.dumps(lines[-1], separators=(",", ":")) + "\n")
    report = verify_chain(path, key)
    assert (report.ok, report.first_bad_line) == (False, 13)  # the first checkpoint after the edit
    assert "signature does not verify" in (report.reason or "")
    assert report.last_good_checkpoint == 9
    unsigned = verify_chain(path)  # without the key the recomputed chain passes, and the report says why
    assert unsigned.ok and not unsigned.checkpoints_verified
    assert any("not verified" in note for note in unsigned.notes)


def test_line_appended_after_the_final_checkpoint(sealed) -> None:
    path, key = sealed
    lines = _read(path)
    record = next(line for line in reversed(lines) if "kind" not in line)
    appended = _rehash([{**record, "request_id": "late", "seq": lines[-1]["seq"] + 1}], lines[-1]["hash"])
    _write(path, lines + appended)
    report = verify_chain(path, key)
    assert (report.ok, report.first_bad_line) == (False, len(lines) + 1)
    assert "appended" in (report.reason or "")


@pytest.fixture
def rotated(log_path: Path, make_record) -> tuple[Path, bytes]:
    """Four files: rotation by size every couple of records."""
    log = AuditLog(AuditConfig(path=log_path, checkpoint_every=100, rotate_max_bytes=1500))
    for i in range(8):
        log.append(make_record(request_id=f"req-{i}"))
    log.close()
    assert len(rotated_files(log_path)) >= 3
    return log_path, read_key(log.config.key_path())


def test_rotated_log_verifies(rotated) -> None:
    path, key = rotated
    report = verify_chain(path, key)
    assert report.ok and report.files == len(rotated_files(path)) + 1, report


def test_deleted_rotated_file_in_the_middle(rotated) -> None:
    path, key = rotated
    files = rotated_files(path)
    gone_first = _read(files[1])[0]["seq"]
    files[1].unlink()
    report = verify_chain(path, key)
    assert (report.ok, report.first_bad_line) == (False, gone_first)
    assert report.bad_file == files[2].name and report.bad_file_line == 1


def test_deleted_oldest_file_without_a_purge(rotated) -> None:
    path, key = rotated
    rotated_files(path)[0].unlink()
    report = verify_chain(path, key)
    assert (report.ok, report.first_bad_line) == (False, 1)
    assert "no purge line" in (report.reason or "")


def test_deleted_newest_file(rotated) -> None:
    path, key = rotated
    path.unlink()  # the active file, with the final checkpoint
    report = verify_chain(path, key)
    assert not report.ok and "truncated" in (report.reason or "")


def test_forged_checkpoint_signed_with_another_key(sealed, tmp_path: Path) -> None:
    from finserve.serving.audit.checkpoint import checkpoint_fields

    path, key = sealed
    lines = _read(path)
    forged = checkpoint_fields(b"x" * 32, lines[-1]["lines"], lines[-1]["head"], True, lines[-1]["time"])
    lines[-1] = _rehash([{**forged, "seq": lines[-1]["seq"]}], lines[-1]["prev_hash"])[0]
    _write(path, lines)
    report = verify_chain(path, key)
    assert (report.ok, report.first_bad_line) == (False, len(lines))
