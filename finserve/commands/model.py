"""``finserve model``: convert the base model and try the generator from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    model_app = typer.Typer(help="The base LLM and the generator engine.", no_args_is_help=True)
    model_app.command("convert")(convert)
    app.add_typer(model_app, name="model")


def convert(
    data_dir: Annotated[
        Path | None, typer.Option(help="Data dir (default: FINSERVE_DATA_DIR or ./var).")
    ] = None,
) -> None:
    """Convert SmolLM2-135M-Instruct from the bundled GGUF to a safetensors folder (once)."""
    from finserve.serving.inference.base_model import ensure_base_model

    typer.echo(str(ensure_base_model(data_dir)))
