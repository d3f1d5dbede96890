"""``finserve guard``: the serving PII guard as a filter over JSON lines on stdin."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("guard")(guard)


def guard(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Serving config YAML; its `guard:` section is the policy."),
    ] = None,
) -> None:
    """Read {"text": ...} lines on stdin; write {"text": masked, "entities": [...]} per line.

    A bad line gets {"error": ...} and the command exits 1 after the last line.
    """
    import yaml

    from finserve.serving.config import load_serving_config
    from finserve.serving.guard import GuardConfigError, PIIGuard
    from finserve.serving.guard.lines import parse_line, render_result

    try:
        pii_guard = PIIGuard(load_serving_config(config).guard)
    except (OSError, ValueError, yaml.YAMLError, GuardConfigError) as exc:
        # ValueError covers pydantic's ValidationError: a config problem, reported without a traceback.
        typer.echo(f"finserve guard: cannot load the guard config: {exc}", err=True)
        raise typer.Exit(2) from None

    failed = 0
    for raw in sys.stdin:
        if not raw.strip():
            continue
        try:
            out = render_result(pii_guard.scan(parse_line(raw).text))
        except ValueError as exc:
            failed += 1
            out = {"error": str(exc)}
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    if failed:
        typer.echo(f"finserve guard: {failed} invalid line(s)", err=True)
        raise typer.Exit(1)
