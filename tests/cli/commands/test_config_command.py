"""`finserve config show`: the config in effect (file, then environment), credentials redacted."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from finserve.cli import app


def test_config_show_prints_the_effective_config_redacted(tmp_path, monkeypatch):
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump({"gateway": {"max_messages": 8}}))
    monkeypatch.setenv("FINSERVE_RETRIEVAL__REDIS_URL", "redis://:hunter2@cache:6379/0")
    result = CliRunner().invoke(app, ["config", "show", "--config", str(path)])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["gateway"]["max_messages"] == 8
    assert shown["retrieval"]["redis_url"] == "redis://:***@cache:6379/0"
    assert "hunter2" not in result.output


def test_config_show_names_a_bad_override_without_its_value(monkeypatch):
    monkeypatch.setenv("FINSERVE_GATEWAY__MAX_TOKENS_LIMIT", "sk-secret-value")
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert "gateway.max_tokens_limit" in result.output and "sk-secret-value" not in result.output


def test_config_show_prints_the_operators_effective_settings(tmp_path, monkeypatch):
    path = tmp_path / "operator.yaml"
    path.write_text(yaml.safe_dump({"poll_seconds": 5, "prometheus": {"timeout": 3}}))
    monkeypatch.setenv("FINSERVE_OPERATOR__PROMETHEUS__URL", "https://ops:hunter2@prom.mon:9090")
    monkeypatch.setenv(
        "FINSERVE_GATEWAY__MAX_TOKENS_LIMIT", "not-the-operators"
    )  # serving's variable: ignored
    result = CliRunner().invoke(
        app, ["config", "show", "--component", "operator", "--config", str(path), "-o", "json"]
    )
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["poll_seconds"] == 5 and shown["prometheus"] == {
        "url": "https://ops:***@prom.mon:9090",
        "timeout": 3,
    }
    assert "gateway" not in shown and "hunter2" not in result.output


def test_config_show_names_a_bad_operator_variable(monkeypatch):
    monkeypatch.setenv("FINSERVE_OPERATOR__POLL_SECONDS", "whenever")
    result = CliRunner().invoke(app, ["config", "show", "--component", "operator"])
    assert result.exit_code == 2
    assert "poll_seconds" in result.output and "whenever" not in result.output


def test_config_show_names_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FINSERVE_OPERATOR_CONFIG", str(tmp_path / "nowhere.yaml"))
    result = CliRunner().invoke(app, ["config", "show", "--component", "operator"])
    assert result.exit_code == 2 and "nowhere.yaml" in result.output and "Traceback" not in result.output
