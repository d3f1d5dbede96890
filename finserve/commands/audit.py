"""``finserve audit verify``: check the audit log's hash chain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
    audit_app.command("verify")(verify)
    app.add_typer(audit_app, name="audit")


def verify(
    path: Annotated[
        Path | None,
        typer.Option("--path", "-p", help="Audit log file (default: the serving config's audit.path)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Serving config YAML, for the default path.")
    ] = None,
) -> None:
    """Exit 0 if every line is intact and chained; 1 with the first broken line otherwise."""
    import yaml
    from rich.console import Console
    from rich.markup import escape

    from finserve.serving.audit import verify_chain

    if path is None:
        from finserve.serving.config import load_serving_config

        try:
            path = load_serving_config(config).audit.path
        except (OSError, ValueError, yaml.YAMLError) as exc:
            typer.echo(f"finserve audit: cannot load the serving config: {exc}", err=True)
            raise typer.Exit(2) from None
    report = verify_chain(path)
    rows = [
        ("file", escape(str(path))),
        ("status", "[green]intact[/green]" if report.ok else "[red]BROKEN[/red]"),
        ("lines checked", str(report.lines)),
    ]
    if not report.ok:
        rows += [
            ("first bad line", str(report.first_bad_line or "-")),
            ("reason", escape(report.reason or "-")),
        ]
    rows.append(("head hash", report.head_hash))
    # soft_wrap: the head hash is meant to be copied elsewhere, so it is never cut or folded.
    console = Console(soft_wrap=True)
    for name, value in rows:
        console.print(f"[bold]{name:<15}[/bold] {value}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)
