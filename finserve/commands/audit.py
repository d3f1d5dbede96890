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
        Path | None, typer.Option("--path", "-p", help="Audit log file (default: the serving config's audit.path).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Serving config YAML, for the default path.")
    ] = None,
) -> None:
    """Exit 0 if every line is intact and chained; 1 with the first broken line otherwise."""
    from rich.console import Console
    from rich.table import Table

    from finserve.serving.audit import verify_chain

    if path is None:
        from finserve.serving.config import load_serving_config

        path = load_serving_config(config).audit.path
    report = verify_chain(path)
    table = Table(show_header=False, box=None)
    table.add_row("file", str(path))
    table.add_row("status", "[green]intact[/green]" if report.ok else "[red]BROKEN[/red]")
    table.add_row("lines checked", str(report.lines))
    if not report.ok:
        table.add_row("first bad line", str(report.first_bad_line) if report.first_bad_line else "-")
        table.add_row("reason", report.reason or "-")
    table.add_row("head hash", report.head_hash)
    Console().print(table)
    if not report.ok:
        raise typer.Exit(1)
