"""`finserve audit verify` on real log files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from finserve.commands import audit as audit_command
from finserve.serving.audit import AuditConfig, AuditLog, AuditRecord


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    audit_command.register(app)
    return app


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(AuditConfig(path=path))
    for i in range(4):
        log.append(
            AuditRecord(
                request_id=f"r{i}", tenant="t", model="m", input="<PERSON>", status=200, latency_ms=3.0
            )
        )
    return path


def test_intact_log_exits_0(app: typer.Typer, log_path: Path) -> None:
    result = CliRunner().invoke(app, ["audit", "verify", "--path", str(log_path)])
    assert result.exit_code == 0, result.output
    assert "intact" in result.output
    head = json.loads(log_path.read_text().splitlines()[-1])["hash"]
    assert head in result.output


def test_broken_log_exits_1_with_the_line(app: typer.Typer, log_path: Path) -> None:
    lines = log_path.read_text().splitlines()
    lines[2] = lines[2].replace('"status":200', '"status":500')
    log_path.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["audit", "verify", "--path", str(log_path)])
    assert result.exit_code == 1
    assert "BROKEN" in result.output
    assert "first bad line" in result.output and " 3" in result.output
    assert "edited" in result.output


def test_default_path_comes_from_the_serving_config(app: typer.Typer, tmp_path: Path, log_path: Path) -> None:
    config = tmp_path / "serving.yaml"
    config.write_text(f"audit:\n  path: {log_path}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["audit", "verify", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "lines checked" in result.output and "4" in result.output


def test_verify_checks_signatures_with_the_key_beside_the_log(app: typer.Typer, log_path: Path) -> None:
    result = CliRunner().invoke(app, ["audit", "verify", "--path", str(log_path)])
    assert result.exit_code == 0 and "signatures verified" in result.output, result.output


def test_a_recomputed_chain_fails_on_its_checkpoint_and_names_the_last_good_one(
    app: typer.Typer, log_path: Path
) -> None:
    from finserve.serving.audit.chain import line_hash

    AuditLog(AuditConfig(path=log_path)).close()  # a final signed checkpoint after the 4 records
    lines = [json.loads(x) for x in log_path.read_text().splitlines()]
    lines[2]["status"] = 500
    prev = lines[1]["hash"]
    for line in lines[2:]:  # recompute every hash after the edit, as someone without the key can
        body = {k: v for k, v in line.items() if k not in ("hash", "prev_hash")}
        if body.get("kind") == "checkpoint":
            body["head"] = prev
        line.clear()
        line.update({**body, "prev_hash": prev, "hash": line_hash(body, prev)})
        prev = line["hash"]
    log_path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = CliRunner().invoke(app, ["audit", "verify", "--path", str(log_path)])
    assert result.exit_code == 1, result.output
    assert "signature does not verify" in result.output
    assert "last good checkpoint" in result.output and " 1\n" in result.output
    unsigned = CliRunner().invoke(
        app, ["audit", "verify", "--path", str(log_path), "--key-file", str(log_path.parent / "missing.key")]
    )
    assert unsigned.exit_code == 2 and "cannot read" in unsigned.output


def test_keygen_writes_a_private_key_once(app: typer.Typer, tmp_path: Path) -> None:
    key = tmp_path / "keys" / "audit.key"
    first = CliRunner().invoke(app, ["audit", "keygen", "--key-file", str(key)])
    assert first.exit_code == 0 and key.stat().st_mode & 0o077 == 0
    assert len(bytes.fromhex(key.read_text().strip())) == 32
    again = CliRunner().invoke(app, ["audit", "keygen", "--key-file", str(key)])
    assert again.exit_code == 1 and "exists" in again.output


def test_purge_removes_old_rotated_files(app: typer.Typer, tmp_path: Path) -> None:
    from finserve.serving.audit.layout import rotated_files

    path = tmp_path / "audit.jsonl"
    log = AuditLog(AuditConfig(path=path, rotate_max_bytes=1))  # every record opens a new file
    for i in range(3):
        log.append(
            AuditRecord(
                request_id=f"r{i}", tenant="t", model="m", input="<PERSON>", status=200, latency_ms=3.0
            )
        )
    assert len(rotated_files(path)) == 2
    result = CliRunner().invoke(app, ["audit", "purge", "--path", str(path), "--before", "2999-01-01"])
    assert result.exit_code == 0 and "removed 2 file(s)" in result.output, result.output
    assert rotated_files(path) == []
    verified = CliRunner().invoke(app, ["audit", "verify", "--path", str(path)])
    assert verified.exit_code == 0 and "starts at line" in verified.output, verified.output
    bad = CliRunner().invoke(app, ["audit", "purge", "--path", str(path), "--before", "last tuesday"])
    assert bad.exit_code == 2
