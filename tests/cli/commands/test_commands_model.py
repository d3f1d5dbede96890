"""``finserve model``: convert prints the cached model folder, generate streams a completion."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from finserve.cli import app
from finserve.serving.inference.base_model import ensure_base_model
from finserve.serving.paths import data_dir

pytestmark = pytest.mark.slow


def test_convert_prints_the_model_folder() -> None:
    folder = ensure_base_model()
    result = CliRunner().invoke(app, ["model", "convert", "--data-dir", str(data_dir())])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(folder)


def test_generate_streams_a_greedy_completion(tmp_path) -> None:  # noqa: ANN001
    ensure_base_model()
    result = CliRunner().invoke(
        app,
        [
            "model",
            "generate",
            "What is the capital of France?",
            "--max-tokens",
            "8",
            "--registry",
            str(tmp_path / "registry"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Paris" in result.output and "finish_reason=" in result.output


def test_generate_with_a_missing_adapter_fails() -> None:
    result = CliRunner().invoke(
        app, ["model", "generate", "hi", "--adapter", "nope@1.0.0", "--max-tokens", "2"]
    )
    assert result.exit_code != 0
    assert "nope@1.0.0" in str(result.exception)
