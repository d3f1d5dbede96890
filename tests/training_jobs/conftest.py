"""Training fixtures: tiny real training runs (real SmolLM2 weights, real PEFT, real Banking77 rows)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_configs import tiny_config, write_config

from finserve.contracts import AdapterRegistry
from finserve.serving.inference.base_model import ensure_base_model


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    return ensure_base_model()


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory: pytest.TempPathFactory, base_model_dir: Path) -> AdapterRegistry:
    """A registry with one tiny version, trained through `finserve train` itself."""
    from typer.testing import CliRunner

    from finserve.cli import app

    work = tmp_path_factory.mktemp("train")
    config = write_config(work / "tiny.yaml", tiny_config())
    registry = work / "registry"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--config",
            str(config),
            "--registry",
            str(registry),
            "--split-dir",
            str(work / "split"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    return AdapterRegistry(registry)
