"""`finserve config show`: a process's config in effect (serving or operator), with credentials redacted."""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel

config = typer.Typer(help="The serving and operator configuration.", no_args_is_help=True)
T = TypeVar("T")


class Component(str, Enum):
    serving = "serving"
    operator = "operator"


def register(app: typer.Typer) -> None:
    app.add_typer(config, name="config")


def load_or_exit(load: Callable[[], T]) -> T:
    """``load()``, or exit 2 naming the first bad field and why, never its value (it may be a secret), or the
    file that cannot be read."""
    from pydantic import ValidationError

    try:
        return load()
    except OSError as exc:
        typer.echo(f"cannot read the config file: {exc.filename}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        typer.echo(f"invalid config: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}", err=True)
        raise typer.Exit(2) from None


@config.command()
def show(
    path: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config YAML (default: FINSERVE_CONFIG, or "
            "FINSERVE_OPERATOR_CONFIG for the operator, or the defaults).",
        ),
    ] = None,
    component: Annotated[
        Component, typer.Option("--component", help="Whose config: serving or operator.")
    ] = (Component.serving),
    output: Annotated[str, typer.Option("--output", "-o", help="yaml or json.")] = "yaml",
) -> None:
    """Defaults, then the file, then the environment's overrides (FINSERVE_<SECTION>__<FIELD> for serving,
    FINSERVE_OPERATOR__<FIELD> for the operator), as the process loads them; passwords, tokens and keys (and
    the password in a URL) print as ***."""
    import yaml

    from finserve.contracts.settings import redacted

    cfg: BaseModel
    if component is Component.operator:
        from finserve.operator.settings import load_operator_config

        cfg = load_or_exit(lambda: load_operator_config(path))
    else:
        from finserve.serving.config import load_serving_config

        cfg = load_or_exit(lambda: load_serving_config(path))
    data = redacted(cfg.model_dump(mode="json"))
    typer.echo(json.dumps(data, indent=2) if output == "json" else yaml.safe_dump(data, sort_keys=False))
