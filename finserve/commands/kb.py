"""``finserve kb``: the knowledge base's quarantine (documents ingest found PII in)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

kb_app = typer.Typer(help="Knowledge base: what ingest quarantined.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Documents in which `finserve ingest` found PII.", no_args_is_help=True)
kb_app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.command("list")
def quarantine_list(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Serving config YAML (its `retrieval` section); default: built-in."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line instead of a table.")
    ] = False,
) -> None:
    """Quarantined documents of the current index: id, policy, entity types and counts (never the text)."""
    from rich.console import Console
    from rich.table import Table

    from finserve.serving.config import load_serving_config
    from finserve.serving.paths import data_dir
    from finserve.serving.retrieval.pii_policy import quarantine_path, read_quarantine

    retrieval = load_serving_config(config).retrieval
    path = quarantine_path(retrieval.quarantine, retrieval.resolved_milvus_uri(), data_dir())
    records = read_quarantine(path)
    if as_json:
        for r in records:
            typer.echo(json.dumps(r.model_dump(mode="json")))
        return
    console = Console()
    if not records:
        console.print(f"no quarantined documents ({path})")
        return
    table = Table(title=f"quarantined documents ({path})")
    for col in ("document", "kind", "intent", "tenant", "policy", "entities"):
        table.add_column(col)
    for r in records:
        entities = ", ".join(f"{k}={v}" for k, v in sorted(r.entities.items()))
        table.add_row(r.doc_id, r.kind, r.intent, r.tenant, r.policy.value, entities)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(kb_app, name="kb")
