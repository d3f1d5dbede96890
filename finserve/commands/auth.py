"""``finserve auth keys create | list | revoke``: API keys per client (only salted hashes are stored)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--keys-file",
        "-f",
        help="Keys file (default: the serving config's auth.keys_file, env "
        "FINSERVE_KEYS_FILE, or <data dir>/auth/keys.json).",
    ),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Serving config YAML, for the defaults.")
]


def register(app: typer.Typer) -> None:
    auth_app = typer.Typer(help="Who may call the serving stack.", no_args_is_help=True)
    keys_app = typer.Typer(help="API keys per client.", no_args_is_help=True)
    keys_app.command("create")(create)
    keys_app.command("list")(list_keys)
    keys_app.command("revoke")(revoke)
    auth_app.add_typer(keys_app, name="keys")
    app.add_typer(auth_app, name="auth")


def _path(keys_file: Path | None, config: Path | None) -> Path:
    if keys_file is not None:
        return keys_file
    import yaml

    from finserve.serving.access import keys_path
    from finserve.serving.config import load_serving_config

    try:
        return keys_path(load_serving_config(config).auth)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        typer.echo(f"finserve auth: cannot load the serving config: {exc}", err=True)
        raise typer.Exit(2) from None


def create(
    name: Annotated[str, typer.Option("--name", help="Who holds the key (a label in listings).")],
    tenant: Annotated[
        list[str], typer.Option("--tenant", help="A tenant the key may act for (repeat; '*': any).")
    ],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="infer, adapter:override or admin (repeat).")
    ] = None,
    keys_file: FileOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Make a key and print it once: only its salted hash is stored."""
    from finserve.serving.access.keys import new_key, read_keys, write_keys

    path = _path(keys_file, config)
    try:
        key, record = new_key(name, tenant, scope or ["infer"])
        keys = read_keys(path)
    except ValueError as exc:
        typer.echo(f"finserve auth keys create: {exc}", err=True)
        raise typer.Exit(2) from None
    keys.keys.append(record)
    write_keys(path, keys)
    typer.echo(
        f"key id {record.id} for {record.name}: tenants {','.join(record.tenants)}, "
        f"scopes {','.join(record.scopes)} (written to {path})",
        err=True,
    )
    typer.echo("the key is shown once; keep it in a secret store:", err=True)
    typer.echo(key)


def list_keys(keys_file: FileOpt = None, config: ConfigOpt = None) -> None:
    """Every key's id, holder, tenants, scopes and state (never the key or its hash)."""
    from finserve.serving.access.keys import read_keys

    path = _path(keys_file, config)
    for r in read_keys(path).keys:
        state = f"revoked {r.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if r.revoked_at else "active"
        typer.echo(
            f"{r.id}\t{r.name}\t{','.join(r.tenants)}\t{','.join(r.scopes)}\t"
            f"{r.created_at:%Y-%m-%dT%H:%M:%SZ}\t{state}"
        )


def revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (fsk_<id>_... or the id alone).")],
    keys_file: FileOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Revoke a key: it stops verifying within the serving stack's reload interval (a few seconds)."""
    from finserve.serving.access.keys import read_keys, write_keys

    path = _path(keys_file, config)
    kid = key_id.removeprefix("fsk_").split("_")[0]  # a pasted key gives its id, and is not echoed
    keys = read_keys(path)
    for r in keys.keys:
        if r.id == kid:
            if r.revoked_at is None:
                r.revoked_at = datetime.now(UTC)
                write_keys(path, keys)
            typer.echo(f"revoked {kid}")
            return
    typer.echo(f"finserve auth keys revoke: no key {kid} in {path}", err=True)
    raise typer.Exit(1)
