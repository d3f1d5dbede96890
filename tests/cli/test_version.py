"""One version: pyproject.toml's. `finserve --version`, the installed package's metadata and the
chart's appVersion (the default image tag) say the same."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import yaml
from typer.testing import CliRunner

from finserve.cli import app

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_the_cli_prints_the_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"finserve {VERSION}"
    assert importlib.metadata.version("finserve") == VERSION


def test_the_chart_app_version_is_the_package_version():
    chart = yaml.safe_load((REPO / "charts" / "finserve" / "Chart.yaml").read_text())
    assert chart["appVersion"] == VERSION, "charts/finserve/Chart.yaml appVersion != pyproject.toml version"
