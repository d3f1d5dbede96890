"""`finserve rollout ...`: watch and steer ModelRollouts, and simulate one offline."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

rollout = typer.Typer(
    help="Canary rollouts of adapter versions (ModelRollout resources).", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(help="ModelRollout name.")]
NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Namespace (default: the kubeconfig context's).")
]

EXIT_FAILED, EXIT_TIMEOUT, EXIT_NOT_FOUND = 1, 2, 3


def register(app: typer.Typer) -> None:
    app.add_typer(rollout, name="rollout")


async def _with_client(fn: Any) -> Any:
    from finserve.operator.adapters.kube import api_client
    from finserve.operator.client import RolloutClient

    api = await api_client()
    try:
        return await fn(RolloutClient(api))
    finally:
        await api.close()


def _run(fn: Any) -> Any:
    from finserve.operator.client import RolloutNotFound

    try:
        return asyncio.run(_with_client(fn))
    except RolloutNotFound as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_NOT_FOUND) from None


def _namespace(namespace: str | None) -> str:
    from finserve.operator.client import default_namespace

    return namespace or default_namespace()


def _print_status(obj: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from finserve.operator.objects import parse_spec

    spec, status = parse_spec(obj.get("spec", {})), obj.get("status") or {}
    steps = [] if isinstance(spec, str) else spec.strategy.steps
    step = status.get("currentStepIndex", 0)
    console = Console()
    meta = obj["metadata"]
    console.print(f"[bold]{meta['namespace']}/{meta['name']}[/] (model {obj.get('spec', {}).get('model')})")
    console.print(
        f"phase [bold]{status.get('phase', '-')}[/], step {step + 1}/{len(steps)}, "
        f"canary weight {status.get('canaryWeight', 0)}%"
        + (f", shadow {status['shadowPercent']:g}%" if status.get("shadowPercent") else "")
    )
    console.print(
        f"stable {status.get('stable', '-')}, canary {status.get('canary', '-')}, "
        f"failed checks {status.get('failedChecks', 0)}"
    )
    if status.get("message"):
        console.print(status["message"])
    analysis = status.get("lastAnalysis")
    if analysis:
        table = Table(
            title=f"last check {analysis.get('time')}: {analysis.get('outcome')} "
            f"({analysis.get('requests', 'no')} requests)"
        )
        for column in ("metric", "value", "outcome", "why"):
            table.add_column(column)
        for m in analysis.get("metrics", []):
            table.add_row(m["name"], str(m.get("value", "-")), m["outcome"], m.get("message", ""))
        console.print(table)
    gate = status.get("evaluation")
    if gate:
        table = Table(
            title=f"evaluation {gate.get('stage')} (Job {gate.get('job')}, attempt {gate.get('attempt', 1)}): "
            f"{gate.get('outcome', 'running')}"
        )
        for column in ("metric", "canary", "stable", "outcome", "why"):
            table.add_column(column)
        for c in gate.get("checks", []):
            table.add_row(
                c["metric"], str(c.get("candidate", "-")), str(c.get("baseline", "-")), c["outcome"], c.get("message", "")
            )
        console.print(table)
        if not gate.get("checks") and gate.get("message"):
            console.print(gate["message"])
    for cond in status.get("conditions", []):
        console.print(f"{cond['type']}={cond['status']} {cond.get('reason', '')}: {cond.get('message', '')}")


@rollout.command()
def status(
    name: NameArg,
    namespace: NamespaceOpt = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
) -> None:
    """Show a rollout's phase, step, weights and last analysis."""
    ns = _namespace(namespace)
    obj = _run(lambda c: c.get(ns, name))
    if output == "json":
        typer.echo(json.dumps(obj, indent=2, default=str))
    else:
        _print_status(obj)


def _command(command: str, name: str, namespace: str | None) -> None:
    ns = _namespace(namespace)
    _run(lambda c: c.command(ns, name, command))
    typer.echo(f"{command} requested for modelrollout {ns}/{name}")


@rollout.command()
def pause(name: NameArg, namespace: NamespaceOpt = None) -> None:
    """Hold the canary at its current weight; no checks run while paused."""
    _command("pause", name, namespace)


@rollout.command()
def resume(name: NameArg, namespace: NamespaceOpt = None) -> None:
    """Continue a paused rollout (its current step starts over)."""
    _command("resume", name, namespace)


@rollout.command()
def promote(name: NameArg, namespace: NamespaceOpt = None) -> None:
    """Skip the remaining steps: the canary becomes stable now."""
    _command("promote", name, namespace)


@rollout.command()
def abort(name: NameArg, namespace: NamespaceOpt = None) -> None:
    """Send all traffic back to stable and stop the rollout."""
    _command("abort", name, namespace)


@rollout.command()
def wait(
    name: NameArg,
    namespace: NamespaceOpt = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait at most.")] = 3600.0,
) -> None:
    """Block until the rollout finishes: exit 0 Succeeded, 1 Failed/Aborted, 2 timeout, 3 not found."""
    from finserve.operator.client import settled
    from finserve.operator.status import Phase

    ns = _namespace(namespace)
    try:
        obj = _run(lambda c: c.wait(ns, name, timeout))
    except TimeoutError:
        typer.echo(f"modelrollout {ns}/{name} did not finish within {timeout:g}s", err=True)
        raise typer.Exit(EXIT_TIMEOUT) from None
    phase = settled(obj)
    typer.echo(f"modelrollout {ns}/{name}: {phase}: {(obj.get('status') or {}).get('message', '')}")
    raise typer.Exit(0 if phase == Phase.SUCCEEDED else EXIT_FAILED)


@rollout.command()
def simulate(
    rollout_file: Annotated[
        Path, typer.Option("--rollout", exists=True, dir_okay=False, help="ModelRollout YAML.")
    ],
    metrics: Annotated[
        Path, typer.Option("--metrics", exists=True, dir_okay=False, help="Metric timeline YAML.")
    ],
    max_duration: Annotated[str, typer.Option(help="Stop the virtual clock after this long.")] = "24h",
) -> None:
    """Run the real decision core on a virtual clock: one JSON line per check, then the result.

    Exit 0 when the rollout would succeed, 1 otherwise.
    """
    import yaml

    from finserve.operator.durations import seconds
    from finserve.operator.simulate import Timeline, load_rollout
    from finserve.operator.simulate import simulate as run_simulation

    name, spec = load_rollout(yaml.safe_load(rollout_file.read_text()))
    timeline = Timeline.model_validate(yaml.safe_load(metrics.read_text()))

    async def lines() -> str:
        result = ""
        async for line in run_simulation(name, spec, timeline, seconds(max_duration)):
            typer.echo(json.dumps(line))
            result = line.get("result", result)
        return result

    raise typer.Exit(0 if asyncio.run(lines()) == "Succeeded" else EXIT_FAILED)
