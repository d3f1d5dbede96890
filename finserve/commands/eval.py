"""``finserve eval --data FILE.csv``: intent accuracy of the served pipeline (guard -> retrieval -> intent)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_(
        data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="text,category CSV to evaluate."),
        adapter: str | None = typer.Option(
            None, "--adapter", help="NAME@VERSION to evaluate (default: the route's stable adapter)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object (accuracy, macro_f1, ...)."),
        config: Path | None = typer.Option(None, "--config", help="Serving config YAML (default: embedded/FINSERVE_CONFIG)."),
        registry: str | None = typer.Option(None, "--registry", help="Adapter registry root (path or fsspec URL)."),
        concurrency: int = typer.Option(4, "--concurrency", min=1, help="Requests in flight at once."),
        limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N rows."),
        tenant: str = typer.Option("default", "--tenant", help="Tenant whose retrieval index is searched."),
    ) -> None:
        """Intent accuracy of the served path (PII guard -> retrieval -> intent) on a text,category CSV.

        Prints accuracy, macro-F1, per-intent precision/recall, the ten most confused pairs and queries/s.
        """
        import asyncio

        from finserve.contracts import AdapterRef
        from finserve.training.data import read_eval_csv
        from finserve.training.evaluate import evaluate

        rows = read_eval_csv(data)[:limit] if limit else read_eval_csv(data)
        ref = AdapterRef.parse(adapter) if adapter else None
        stack = _stack(config, registry)
        try:
            report = asyncio.run(_run(evaluate, stack.pipeline, rows, ref, tenant, concurrency, not as_json))
        finally:
            stack.retriever.close()
        if as_json:
            typer.echo(report.model_dump_json(indent=2))
        else:
            _print(report)


def _stack(config: Path | None, registry: str | None):  # noqa: ANN202 - serving is imported lazily
    from finserve.serving.config import load_serving_config
    from finserve.serving.local import build_local_stack

    cfg = load_serving_config(config)
    if registry:
        cfg = cfg.model_copy(update={"generator": cfg.generator.model_copy(update={"registry": registry})})
    return build_local_stack(cfg, with_generator=False)


async def _run(evaluate, pipeline, rows, ref, tenant, concurrency, progress):  # noqa: ANN001, ANN202
    from tqdm.auto import tqdm

    with tqdm(total=len(rows), desc="eval", unit="query", disable=not progress) as bar:
        return await evaluate(pipeline, rows, ref, tenant=tenant, concurrency=concurrency, on_row=lambda: bar.update(1))


def _print(report) -> None:  # noqa: ANN001
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{report.n} queries[/bold] adapter={report.adapter or 'route stable'}  "
                  f"accuracy [bold]{report.accuracy:.4f}[/bold]  macro-F1 [bold]{report.macro_f1:.4f}[/bold]  "
                  f"{report.queries_per_s:.2f} queries/s (concurrency {report.concurrency})")
    console.print(f"methods: {report.methods}  errors: {report.errors or 'none'}  PII masked: {report.pii_entities or 'none'}")
    per = Table(title="per intent")
    for col in ("intent", "precision", "recall", "F1", "support"):
        per.add_column(col, justify="left" if col == "intent" else "right")
    for s in report.per_intent:
        per.add_row(s.intent, f"{s.precision:.3f}", f"{s.recall:.3f}", f"{s.f1:.3f}", str(s.support))
    console.print(per)
    confused = Table(title="most confused (gold -> predicted)")
    for col in ("gold", "predicted", "count"):
        confused.add_column(col)
    for pair in report.confused:
        confused.add_row(pair.gold, pair.predicted, str(pair.count))
    console.print(confused)
