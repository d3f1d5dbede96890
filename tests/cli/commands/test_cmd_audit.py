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
