"""``finserve eval``: ``intent`` scores the served intent path; ``answers`` scores the served answers.

``finserve eval --data FILE.csv ...`` (no subcommand) still runs ``intent``, as it did before the group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Data = Annotated[
    Path | None, typer.Option("--data", exists=True, dir_okay=False, help="text,category CSV to evaluate.")
]
Config = Annotated[
    Path | None, typer.Option("--config", help="Serving config YAML (default: embedded/FINSERVE_CONFIG).")
]
Registry = Annotated[
    str | None, typer.Option("--registry", help="Adapter registry root (path or fsspec URL).")
]
Limit = Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N rows.")]
Tenant = Annotated[str, typer.Option("--tenant", help="Tenant whose retrieval index is searched.")]


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Evaluate the served pipeline on a golden set: intent labels or whole answers.")
    app.add_typer(group, name="eval")

    @group.callback(invoke_without_command=True)
    def eval_(
        ctx: typer.Context,
        data: Data = None,
        adapter: str | None = typer.Option(
            None, "--adapter", help="NAME@VERSION to evaluate (default: the route's stable adapter)."
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print one JSON object (accuracy, macro_f1, ...)."
        ),
        config: Config = None,
        registry: Registry = None,
        concurrency: int = typer.Option(4, "--concurrency", min=1, help="Requests in flight at once."),
        limit: Limit = None,
        tenant: Tenant = "default",
    ) -> None:
        """Without a subcommand: `finserve eval intent` with these options (the command's older form)."""
        if ctx.invoked_subcommand is not None:
            if data is not None:
                raise typer.BadParameter("put the options after the subcommand", param_hint="--data")
            return
        if data is None:
            typer.echo(ctx.get_help())
            raise typer.Exit(2)
        _intent(data, adapter, as_json, config, registry, concurrency, limit, tenant)

    @group.command("intent")
    def intent(
        data: Annotated[
            Path, typer.Option("--data", exists=True, dir_okay=False, help="text,category CSV to evaluate.")
        ],
        adapter: str | None = typer.Option(
            None, "--adapter", help="NAME@VERSION to evaluate (default: the route's stable adapter)."
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print one JSON object (accuracy, macro_f1, ...)."
        ),
        config: Config = None,
        registry: Registry = None,
        concurrency: int = typer.Option(4, "--concurrency", min=1, help="Requests in flight at once."),
        limit: Limit = None,
        tenant: Tenant = "default",
    ) -> None:
        """Intent accuracy of the served path (PII guard -> retrieval -> intent) on a text,category CSV.

        Prints accuracy, macro-F1, per-intent precision/recall, the ten most confused pairs and queries/s.
        """
        _intent(data, adapter, as_json, config, registry, concurrency, limit, tenant)

    @group.command("answers")
    def answers(
        data: Data = None,
        split: str | None = typer.Option(
            None,
            "--split",
            help="Instead of --data: 'validation', the held-out part of the shared Banking77 split.",
        ),
        per_intent: int | None = typer.Option(
            None,
            "--per-intent",
            min=1,
            help="A stratified sample of N rows per intent (seeded) of --split or --data.",
        ),
        adapter: str | None = typer.Option(
            None,
            "--adapter",
            help="NAME@VERSION to evaluate (default: the route's stable; base@0.0.0: bare model).",
        ),
        baseline: str | None = typer.Option(
            None, "--baseline", help="NAME@VERSION to compare against on the same rows (paired test)."
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print the report as one JSON object (last line of stdout)."
        ),
        report_path: Path | None = typer.Option(
            None, "--report", help="Also write the full report (JSON) here."
        ),
        answers_path: Path | None = typer.Option(
            None,
            "--answers",
            help="Also write every row (masked query, answer, knowledge, scores) as JSON lines here.",
        ),
        termination_log: Path | None = typer.Option(
            None,
            "--termination-log",
            help="Also write the report's summary (JSON, under 4 KiB) here, e.g. "
            "/dev/termination-log for a Kubernetes Job.",
        ),
        max_tokens: int | None = typer.Option(
            None,
            "--max-tokens",
            min=1,
            help="Completion cap per answer (default: gateway.max_tokens_default).",
        ),
        threshold: float | None = typer.Option(
            None,
            "--groundedness-threshold",
            min=0.0,
            max=1.0,
            help="Cosine at or above which an answer sentence counts as supported (default 0.75, docs/training.md).",
        ),
        config: Config = None,
        registry: Registry = None,
        concurrency: int = typer.Option(
            8, "--concurrency", min=1, help="Requests in flight at once (fills batches)."
        ),
        limit: Limit = None,
        tenant: Tenant = "default",
        seed: int = typer.Option(0, "--seed", help="Seed of the --per-intent sample."),
    ) -> None:
        """Answer quality of the served pipeline (guard -> retrieval -> generation -> output guard) on a golden set.

        Scores answer accuracy (nearest reference answer), groundedness in the retrieved knowledge,
        truncation, repetition, empty answers, PII in answers, latency and tokens/s; with --baseline,
        a paired McNemar test and a bootstrap interval of the accuracy delta.
        """
        rows, dataset, checksum = _golden_set(data, split, per_intent, seed, limit)
        _answers(
            rows,
            dataset,
            checksum,
            adapter,
            baseline,
            as_json,
            report_path,
            termination_log,
            answers_path,
            max_tokens,
            threshold,
            config,
            registry,
            concurrency,
            tenant,
        )


def _golden_set(data: Path | None, split: str | None, per_intent: int | None, seed: int, limit: int | None):  # noqa: ANN202
    from finserve.contracts.registry import sha256_file
    from finserve.serving.paths import banking77_csv
    from finserve.training.data import load_splits, per_intent_subset, read_eval_csv

    if (data is None) == (split is None):
        raise typer.BadParameter("give exactly one of --data and --split", param_hint="--data / --split")
    if data is not None:
        rows, dataset, checksum = read_eval_csv(data), str(data), sha256_file(data)
        if per_intent:
            rows = per_intent_subset(rows, per_intent, seed)
    else:
        if split != "validation":
            raise typer.BadParameter(
                "only 'validation' (the Banking77 test split is never used)", param_hint="--split"
            )
        splits = load_splits(banking77_csv(), max_validation_per_intent=per_intent, seed=seed)
        rows, checksum = splits.validation, splits.checksum
        dataset = "banking77:validation" + (f":per-intent={per_intent}:seed={seed}" if per_intent else "")
    rows = rows[:limit] if limit else rows
    if not rows:
        raise typer.BadParameter("the golden set holds no rows", param_hint="--data")
    return rows, dataset, checksum


def _stack(config: Path | None, registry: str | None, with_generator: bool):  # noqa: ANN202 - serving is lazy
    from finserve.serving.config import load_serving_config
    from finserve.serving.local import build_local_stack

    cfg = load_serving_config(config)
    if registry:
        cfg = cfg.model_copy(update={"generator": cfg.generator.model_copy(update={"registry": registry})})
    return build_local_stack(cfg, with_generator=with_generator)


def _answers(
    rows,
    dataset,
    checksum,
    adapter,
    baseline,
    as_json,
    report_path,
    termination_log,  # noqa: ANN001, PLR0913
    answers_path,
    max_tokens,
    threshold,
    config,
    registry,
    concurrency,
    tenant,
) -> None:
    import asyncio
    import logging
    import sys
    import time

    from tqdm.auto import tqdm

    from finserve.contracts import AdapterRef
    from finserve.serving.errors import map_error
    from finserve.serving.retrieval.kb import load_answers
    from finserve.training import answer_metrics
    from finserve.training.answer_eval import AnswerScorer, answer_rows, build_report, write_answers

    for name, value in (("--adapter", adapter), ("--baseline", baseline)):
        if value:
            try:
                AdapterRef.parse(value)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint=name) from exc
    logging.getLogger("finserve").setLevel(logging.WARNING)
    stack = _stack(config, registry, with_generator=True)
    model = next(iter(stack.pipeline.router.models()), None)
    if model is None:
        raise typer.BadParameter("the serving config routes no model", param_hint="--config")
    versions = [adapter] + ([baseline] if baseline else [])

    async def run():  # noqa: ANN202
        await stack.start()
        try:
            with tqdm(
                total=len(rows) * len(versions),
                desc="answers",
                unit="answer",
                file=sys.stderr,
                mininterval=2.0,
            ) as bar:
                return [
                    await answer_rows(
                        stack.pipeline,
                        rows,
                        model=model,
                        adapter=v,
                        tenant=tenant,
                        max_tokens=max_tokens,
                        concurrency=concurrency,
                        on_row=lambda: bar.update(1),
                    )
                    for v in versions
                ]
        finally:
            await stack.stop()

    started = time.perf_counter()
    try:
        runs = asyncio.run(run())
    except Exception as exc:  # noqa: BLE001 - a domain error is a message, not a traceback
        mapped = map_error(exc)
        if mapped.code == "internal_error":
            raise
        typer.echo(f"error: {mapped.message}", err=True)
        raise typer.Exit(1) from exc
    scorer = AnswerScorer(
        _packaged_embedder(stack.retriever.embedder),
        load_answers(),
        answer_metrics.GROUNDEDNESS_THRESHOLD if threshold is None else threshold,
    )
    report = build_report(
        scorer,
        dataset,
        checksum,
        (adapter or "route", runs[0]),
        (baseline, runs[1]) if baseline else None,
        time.perf_counter() - started,
    )
    if answers_path:
        write_answers(
            answers_path,
            scorer,
            [(adapter or "route", runs[0])] + ([(baseline, runs[1])] if baseline else []),
        )
    if report_path:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    if termination_log:
        termination_log.write_text(report.summary().model_dump_json(), encoding="utf-8")
    if as_json:
        typer.echo(report.model_dump_json())
    else:
        _print_answers(report)


def _packaged_embedder(retrieval_embedder):  # noqa: ANN001, ANN202
    """Scores use the packaged MiniLM whatever retrieval embeds with, so figures compare across configs;
    the retriever's instance is reused when it is that model."""
    from finserve.serving.retrieval.embedder import Embedder, default_model_path

    if retrieval_embedder.path.resolve() == default_model_path().resolve():
        return retrieval_embedder
    return Embedder()


def _print_answers(report) -> None:  # noqa: ANN001
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"answers on {report.dataset} ({report.seconds:.0f} s)")
    versions = [("candidate", report.candidate)] + (
        [("baseline", report.baseline)] if report.baseline else []
    )
    table.add_column("metric")
    for role, m in versions:
        table.add_column(f"{role}\n{m.adapter}", justify="right")

    def fmt(value) -> str:  # noqa: ANN001
        return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

    for name in (
        "rows",
        "errors",
        "answer_accuracy",
        "groundedness",
        "unsupported_sentences",
        "truncated_rate",
        "empty_rate",
        "repetition_rate",
        "pii_leaks",
        "intent_accuracy",
        "out_of_scope_rate",
        "mean_words",
        "latency_p50_ms",
        "latency_p95_ms",
        "tokens_per_s",
    ):
        table.add_row(name, *(fmt(getattr(m, name)) for _, m in versions))
    console.print(table)
    console.print(f"groundedness threshold {report.groundedness_threshold}")
    c = report.comparison
    if c:
        console.print(
            f"[bold]{c.verdict}[/bold]: answer accuracy delta {c.delta:+.4f} "
            f"(95 % CI {c.ci_low:+.4f} .. {c.ci_high:+.4f}), McNemar p = {c.p_value:.4g}, "
            f"{c.candidate_only} rows only the candidate got right, {c.baseline_only} only the baseline"
        )


def _intent(data, adapter, as_json, config, registry, concurrency, limit, tenant) -> None:  # noqa: ANN001
    import asyncio

    from finserve.contracts import AdapterRef
    from finserve.training.data import read_eval_csv
    from finserve.training.evaluate import evaluate

    rows = read_eval_csv(data)[:limit] if limit else read_eval_csv(data)
    ref = AdapterRef.parse(adapter) if adapter else None
    stack = _stack(config, registry, with_generator=False)
    try:
        report = asyncio.run(_run(evaluate, stack.pipeline, rows, ref, tenant, concurrency, not as_json))
    finally:
        stack.retriever.close()
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        _print(report)


async def _run(evaluate, pipeline, rows, ref, tenant, concurrency, progress):  # noqa: ANN001, ANN202
    from tqdm.auto import tqdm

    with tqdm(total=len(rows), desc="eval", unit="query", disable=not progress) as bar:
        return await evaluate(
            pipeline, rows, ref, tenant=tenant, concurrency=concurrency, on_row=lambda: bar.update(1)
        )


def _print(report) -> None:  # noqa: ANN001
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{report.n} queries[/bold] adapter={report.adapter or 'route stable'}  "
        f"accuracy [bold]{report.accuracy:.4f}[/bold]  macro-F1 [bold]{report.macro_f1:.4f}[/bold]  "
        f"{report.queries_per_s:.2f} queries/s (concurrency {report.concurrency})"
    )
    console.print(
        f"methods: {report.methods}  errors: {report.errors or 'none'}  PII masked: {report.pii_entities or 'none'}"
    )
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
