"""`finserve config show`: the serving config in effect, with credentials redacted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

config = typer.Typer(help="The serving configuration.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(config, name="config")


@config.command()
def show(
    path: Annotated[Path | None, typer.Option("--config", "-c", help="Serving config YAML (default: FINSERVE_CONFIG "
                                              "or the embedded defaults).")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="yaml or json.")] = "yaml",
) -> None:
    """Defaults, then the file, then FINSERVE_<SECTION>__<FIELD> environment overrides, as the server loads
    them; passwords, tokens and keys (and the password in a URL) print as ***."""
    import yaml
    from pydantic import ValidationError

    from finserve.serving.config import load_serving_config
    from finserve.serving.settings import redacted

    try:
        cfg = load_serving_config(path)
    except ValidationError as exc:
        first = exc.errors()[0]  # never the input value: it may be a secret
        typer.echo(f"invalid config: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}", err=True)
        raise typer.Exit(2) from None
    data = redacted(cfg.model_dump(mode="json"))
    typer.echo(json.dumps(data, indent=2) if output == "json" else yaml.safe_dump(data, sort_keys=False))
