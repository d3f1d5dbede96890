"""``finserve ingest``: build the retrieval index from Banking77 and the shipped answer texts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def ingest(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="Serving config YAML (its `retrieval` section is used); default: built-in."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when the index is current.")] = False,
    tenant: Annotated[str, typer.Option(help="Tenant the documents belong to.")] = "default",
) -> None:
    """Index the answers and the training split of Banking77 in Milvus (skips when current)."""
    import logging
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from rich.console import Console

    from finserve.serving.config import load_serving_config
    from finserve.serving.retrieval import VectorStoreUnavailable
    from finserve.serving.retrieval import ingest as run_ingest

    console = Console()
    retrieval = load_serving_config(config).retrieval
    try:
        report = run_ingest(retrieval, tenant=tenant, force=force)
    except VectorStoreUnavailable as exc:
        console.print(f"[red]Milvus unavailable:[/red] {exc}")
        raise typer.Exit(code=2) from exc
    verb = "unchanged" if report.skipped else "built"
    console.print(
        f"index {report.index_version[:12]} {verb}: {report.answers} answers, {report.examples} examples "
        f"in {report.collection} ({report.seconds:.1f} s)"
    )


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
