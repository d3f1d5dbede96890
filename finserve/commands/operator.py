"""`finserve operator run`: the ModelRollout operator (kopf)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

operator = typer.Typer(help="The ModelRollout operator.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(operator, name="operator")


@operator.command()
def run(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Namespace to serve (repeatable; globs allowed)."),
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Serve every namespace.")
    ] = False,
    liveness: Annotated[
        str, typer.Option(help="Liveness endpoint for probes ('' disables).")
    ] = "http://0.0.0.0:8080/healthz",
    peering: Annotated[
        str | None, typer.Option(help="kopf peering name for several replicas (default: standalone).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every handler step.")] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Operator config YAML (default: $FINSERVE_OPERATOR_CONFIG "
            "or the defaults); FINSERVE_OPERATOR__<FIELD> variables override it.",
        ),
    ] = None,
) -> None:
    """Run the operator until SIGINT/SIGTERM. Its settings (`finserve config show --component operator`):
    Prometheus $FINSERVE_OPERATOR__PROMETHEUS__URL; its own /metrics on port $FINSERVE_OPERATOR__METRICS_PORT
    (default 8090, 0 turns it off)."""
    if bool(namespace) == all_namespaces:
        raise typer.BadParameter("give --namespace (one or more) or --all-namespaces, not both or neither")
    import kopf

    from finserve.commands.config import load_or_exit
    from finserve.operator.settings import load_operator_config

    settings = load_or_exit(
        lambda: load_operator_config(config)
    )  # a bad setting stops here, before kopf starts

    import finserve.operator.handlers  # noqa: F401  (registers the handlers with kopf)
    from finserve.contracts.telemetry import log_format, setup_tracing

    # FINSERVE_LOG_FORMAT=json (the chart's default): kopf's JSON lines; OTEL_*: a trace per rollout tick.
    kopf.configure(
        verbose=verbose, log_format=kopf.LogFormat.JSON if log_format() == "json" else kopf.LogFormat.FULL
    )
    setup_tracing("finserve-operator")
    kopf.run(
        clusterwide=all_namespaces,
        namespaces=namespace or (),
        standalone=peering is None,
        peering_name=peering,
        liveness_endpoint=liveness or None,
        memo=kopf.Memo(config=settings),
    )
