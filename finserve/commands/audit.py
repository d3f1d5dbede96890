"""``finserve audit verify | keygen | purge``: check, sign and prune the audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

PathOpt = Annotated[
    Path | None,
    typer.Option("--path", "-p", help="The log's active file (default: the serving config's audit.path)."),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Serving config YAML, for the defaults.")
]
KeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        "-k",
        help="Checkpoint key file (default: the serving config's "
        "audit.checkpoint_key_file, or checkpoint.key beside the log when it exists).",
    ),
]


def register(app: typer.Typer) -> None:
    audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
    audit_app.command("verify")(verify)
    audit_app.command("keygen")(keygen)
    audit_app.command("purge")(purge)
    app.add_typer(audit_app, name="audit")


def _audit_config(path: Path | None, config: Path | None):  # noqa: ANN202 - AuditConfig, imported lazily
    import yaml

    from finserve.serving.audit import AuditConfig

    if path is not None and config is None:
        return AuditConfig(path=path)
    from finserve.serving.config import load_serving_config

    try:
        cfg = load_serving_config(config).audit
    except (OSError, ValueError, yaml.YAMLError) as exc:
        typer.echo(f"finserve audit: cannot load the serving config: {exc}", err=True)
        raise typer.Exit(2) from None
    return cfg.model_copy(update={"path": path}) if path is not None else cfg


def verify(path: PathOpt = None, config: ConfigOpt = None, key_file: KeyOpt = None) -> None:
    """Exit 0 if every line is intact, chained and (with a key) covered by valid checkpoints;
    1 with the first bad line and the last good checkpoint otherwise."""
    from rich.console import Console
    from rich.markup import escape

    from finserve.serving.audit import CheckpointKeyError, read_key, verify_chain

    cfg = _audit_config(path, config)
    key_path = key_file or cfg.key_path()
    key = None
    if key_file is not None or cfg.checkpoint_key_file is not None or key_path.exists():
        try:
            key = read_key(key_path)
        except CheckpointKeyError as exc:
            typer.echo(f"finserve audit: {exc}", err=True)
            raise typer.Exit(2) from None
    report = verify_chain(cfg.path, key)
    rows = [
        ("file", escape(str(cfg.path))),
        ("status", "[green]intact[/green]" if report.ok else "[red]BROKEN[/red]"),
        ("files", str(report.files)),
        ("lines checked", str(report.lines)),
        ("starts at line", str(report.starts_at)),
        (
            "checkpoints",
            f"{report.checkpoints} "
            + (
                "signatures verified"
                if report.checkpoints_verified
                else "[yellow]signatures NOT verified (no key)[/yellow]"
            ),
        ),
        ("last good checkpoint", str(report.last_good_checkpoint or "-")),
        ("unsigned tail", f"{report.unsigned_tail} lines after the last checkpoint"),
    ]
    if not report.ok:
        where = f" ({report.bad_file} line {report.bad_file_line})" if report.bad_file else ""
        rows += [
            ("first bad line", f"{report.first_bad_line or '-'}{escape(where)}"),
            ("reason", escape(report.reason or "-")),
        ]
    rows.append(("head hash", report.head_hash))
    rows += [("note", escape(note)) for note in report.notes]
    # soft_wrap: the head hash is meant to be copied elsewhere, so it is never cut or folded.
    console = Console(soft_wrap=True)
    for name, value in rows:
        console.print(f"[bold]{name:<20}[/bold] {value}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


def keygen(
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file", "-k", help="Where to write the key (default: the serving config's audit key path)."
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Create a random checkpoint key (hex, mode 0600); never overwrites one. On Kubernetes put it in
    a Secret instead: `kubectl create secret generic finserve-audit-key --from-file=key=FILE`."""
    from finserve.serving.audit import create_key

    target = key_file or _audit_config(None, config).key_path()
    try:
        create_key(target)
    except FileExistsError:
        typer.echo(f"finserve audit: {target} exists; remove it first to replace the key", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote a new checkpoint key to {target}")


def _utc_date(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("expected an ISO date or time, e.g. 2026-01-31") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def purge(
    before: Annotated[
        str,
        typer.Option(
            "--before",
            help="Remove whole rotated files whose last line is "
            "older than this ISO date/time (UTC unless it says otherwise).",
        ),
    ],
    path: PathOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Retention: remove old rotated files; what stays verifies from its opening checkpoint, and a
    chained purge line records what went."""
    from finserve.serving.audit import AuditError, AuditLog

    cfg = _audit_config(path, config)
    try:
        report = AuditLog(cfg).purge(_utc_date(before))
    except (OSError, AuditError) as exc:
        typer.echo(f"finserve audit: purge failed: {exc}", err=True)
        raise typer.Exit(1) from None
    if not report.removed:
        typer.echo("nothing to purge")
        return
    typer.echo(
        f"removed {len(report.removed)} file(s): {', '.join(report.removed)}; "
        f"the log now starts at line {report.first_kept_line}"
    )
