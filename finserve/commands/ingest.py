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
    answers: Annotated[
        Path | None,
        typer.Option("--answers", help="Answer texts YAML (intent -> text); default: the shipped ones."),
    ] = None,
) -> None:
    """Index the answers and the training split of Banking77 in Milvus (skips when current).

    Every document is scanned by the PII guard first; one with findings is quarantined per the config's
    `retrieval.quarantine.policy` (skip: not indexed; mask: indexed masked), listed by
    `finserve kb quarantine list` and written to the audit log (masked).
    """
    import logging
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from rich.console import Console

    from finserve.serving.audit.log import AuditLog
    from finserve.serving.config import load_serving_config
    from finserve.serving.guard.engine import PIIGuard
    from finserve.serving.retrieval import VectorStoreUnavailable
    from finserve.serving.retrieval import ingest as run_ingest

    console = Console()
    cfg = load_serving_config(config)
    guard = PIIGuard(cfg.guard)
    audit = AuditLog(cfg.audit, guard=guard)
    try:
        report = run_ingest(
            cfg.retrieval,
            answers_path=answers,
            tenant=tenant,
            force=force,
            scan=guard.scan_many,
            on_quarantine=lambda record, masked: audit.append(quarantine_audit_record(record, masked)),
        )
    except VectorStoreUnavailable as exc:
        console.print(f"[red]Milvus unavailable:[/red] {exc}")
        raise typer.Exit(code=2) from exc
    verb = "unchanged" if report.skipped else "built"
    console.print(
        f"index {report.index_version[:12]} {verb}: {report.answers} answers, {report.examples} examples "
        f"({report.off_topic} off-topic) in {report.collection} ({report.seconds:.1f} s)"
    )
    if report.quarantined:
        console.print(
            f"[yellow]{report.quarantined} documents quarantined for PII "
            f"(policy {cfg.retrieval.quarantine.policy.value}): finserve kb quarantine list[/yellow]"
        )


def quarantine_audit_record(record, masked_text: str):  # noqa: ANN001, ANN201 - heavy types load lazily
    """One audit line per quarantined document: its masked text and what was found, never the raw text."""
    from finserve.serving.audit.log import AuditRecord
    from finserve.serving.retrieval.pii_policy import QuarantinePolicy

    skipped = record.policy is QuarantinePolicy.skip
    return AuditRecord(
        time=record.time,
        request_id=f"ingest-{record.index_version[:12]}-{record.doc_id}",
        tenant=record.tenant,
        model="finserve-ingest",
        intent=record.intent,
        input=masked_text,
        pii={"ingest": record.entities},
        status=422 if skipped else 200,
        error=f"pii_quarantined: {record.policy.value}",
        latency_ms=0.0,
    )


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
