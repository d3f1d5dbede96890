"""`finserve rollout ...`: watch and steer ModelRollouts, and simulate one offline.

Installed also as ``kubectl-finserve``, so ``kubectl finserve rollout ...`` works as a kubectl plugin;
``--context`` and ``--namespace`` / ``-n`` mean what they mean to kubectl.
"""

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
ContextOpt = Annotated[
    str | None, typer.Option("--context", help="kubeconfig context (default: the current one).")
]

EXIT_FAILED, EXIT_TIMEOUT, EXIT_NOT_FOUND = 1, 2, 3


def register(app: typer.Typer) -> None:
    app.add_typer(rollout, name="rollout")


async def _with_client(fn: Any, context: str | None = None) -> Any:
    from finserve.operator.adapters.kube import api_client
    from finserve.operator.client import RolloutClient

    api = await api_client(context)
    try:
        return await fn(RolloutClient(api))
    finally:
        await api.close()


def _run(fn: Any, context: str | None = None) -> Any:
    from finserve.operator.client import RolloutNotFound

    try:
        return asyncio.run(_with_client(fn, context))
    except RolloutNotFound as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_NOT_FOUND) from None


def _namespace(namespace: str | None, context: str | None = None) -> str:
    from finserve.operator.client import default_namespace

    return namespace or default_namespace(context)


def _print_status(obj: dict[str, Any]) -> None:
    from rich.console import Console

    Console().print(_render(obj))


def _render(obj: dict[str, Any], with_steps: bool = False) -> Any:
    """The rollout as rich renderables: phase, weights, (the plan's steps,) last analysis, evaluation."""
    from rich.console import Group
    from rich.table import Table

    from finserve.operator.objects import parse_spec

    spec, status = parse_spec(obj.get("spec", {})), obj.get("status") or {}
    steps = [] if isinstance(spec, str) else spec.strategy.steps
    step = status.get("currentStepIndex", 0)
    parts: list[Any] = []

    meta = obj["metadata"]
    parts.append(f"[bold]{meta['namespace']}/{meta['name']}[/] (model {obj.get('spec', {}).get('model')})")
    parts.append(
        f"phase [bold]{status.get('phase', '-')}[/], step {step + 1}/{len(steps)}, "
        f"canary weight {status.get('canaryWeight', 0)}%"
        + (f", shadow {status['shadowPercent']:g}%" if status.get("shadowPercent") else "")
    )
    parts.append(
        f"stable {status.get('stable', '-')}, canary {status.get('canary', '-')}, "
        f"failed checks {status.get('failedChecks', 0)}"
    )
    if status.get("message"):
        parts.append(status["message"])
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
        parts.append(table)
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
                c["metric"],
                str(c.get("candidate", "-")),
                str(c.get("baseline", "-")),
                c["outcome"],
                c.get("message", ""),
            )
        parts.append(table)
        if not gate.get("checks") and gate.get("message"):
            parts.append(gate["message"])
    if with_steps and steps:
        plan = Table(title="steps")
        for column in ("", "step", "canary weight"):
            plan.add_column(column)
        live = status.get("phase") in ("Progressing", "Paused", "Evaluating")
        for i, weight in enumerate(steps):
            plan.add_row("▶" if live and i == step else "", str(i + 1), f"{weight}%")
        parts.insert(3 if status.get("message") else 2, plan)
    for cond in status.get("conditions", []):
        parts.append(f"{cond['type']}={cond['status']} {cond.get('reason', '')}: {cond.get('message', '')}")
    return Group(*parts)


@rollout.command()
def status(
    name: NameArg,
    namespace: NamespaceOpt = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
    context: ContextOpt = None,
) -> None:
    """Show a rollout's phase, step, weights and last analysis."""
    ns = _namespace(namespace, context)
    obj = _run(lambda c: c.get(ns, name), context)
    if output == "json":
        typer.echo(json.dumps(obj, indent=2, default=str))
    else:
        _print_status(obj)


def _command(command: str, name: str, namespace: str | None, context: str | None = None) -> None:
    ns = _namespace(namespace, context)
    _run(lambda c: c.command(ns, name, command), context)
    typer.echo(f"{command} requested for modelrollout {ns}/{name}")


@rollout.command()
def pause(name: NameArg, namespace: NamespaceOpt = None, context: ContextOpt = None) -> None:
    """Hold the canary at its current weight; no checks run while paused."""
    _command("pause", name, namespace, context)


@rollout.command()
def resume(name: NameArg, namespace: NamespaceOpt = None, context: ContextOpt = None) -> None:
    """Continue a paused rollout (its current step starts over)."""
    _command("resume", name, namespace, context)


@rollout.command()
def promote(name: NameArg, namespace: NamespaceOpt = None, context: ContextOpt = None) -> None:
    """Skip the remaining steps: the canary becomes stable now."""
    _command("promote", name, namespace, context)


@rollout.command()
def abort(name: NameArg, namespace: NamespaceOpt = None, context: ContextOpt = None) -> None:
    """Send all traffic back to stable and stop the rollout."""
    _command("abort", name, namespace, context)


@rollout.command()
def retry(name: NameArg, namespace: NamespaceOpt = None, context: ContextOpt = None) -> None:
    """Start a Failed or Aborted rollout again from its first step (ignored in any other phase)."""
    _command("retry", name, namespace, context)


@rollout.command()
def undo(name: NameArg, namespace: NamespaceOpt = None, context: ContextOpt = None) -> None:
    """Roll back a Succeeded rollout through a new rollout: the previous stable version becomes the canary
    and goes through the same steps and analysis (stable and canary swap in the spec)."""
    from finserve.operator.client import UndoRefused

    ns = _namespace(namespace, context)
    try:
        obj = _run(lambda c: c.undo(ns, name), context)
    except UndoRefused as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_FAILED) from None
    spec = obj["spec"]
    typer.echo(
        f"modelrollout {ns}/{name}: rolling {spec['canary']['adapter']}@{spec['canary']['version']} back in "
        f"(stable {spec['stable']['adapter']}@{spec['stable']['version']})"
    )


@rollout.command("list")
def list_rollouts(
    namespace: NamespaceOpt = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="Every namespace.")] = False,
    context: ContextOpt = None,
) -> None:
    """The rollouts with phase, step, weight, stable and canary (as `kubectl get mro` adds columns)."""
    from rich.console import Console
    from rich.table import Table

    from finserve.operator.objects import parse_spec

    ns = None if all_namespaces else _namespace(namespace, context)
    items = _run(lambda c: c.list_rollouts(ns), context)
    table = Table(box=None)
    for column in ("NAMESPACE", "NAME", "MODEL", "PHASE", "STEP", "WEIGHT", "STABLE", "CANARY"):
        table.add_column(column)
    for obj in items:
        st, spec, meta = obj.get("status") or {}, obj.get("spec") or {}, obj["metadata"]
        parsed = parse_spec(spec)  # the defaults fill steps a manifest leaves out; an invalid spec has none
        steps = [] if isinstance(parsed, str) else parsed.strategy.steps
        step = f"{st.get('currentStepIndex', 0) + 1}/{len(steps)}" if steps else "-"
        table.add_row(
            meta.get("namespace", ""),
            meta["name"],
            str(spec.get("model", "")),
            st.get("phase", "-"),
            step,
            f"{st.get('canaryWeight', 0)}%",
            st.get("stable", "-"),
            st.get("canary") or "-",
        )
    if not items:
        typer.echo(f"no modelrollouts{'' if ns is None else ' in namespace ' + ns}")
        return
    Console(width=200).print(table)


@rollout.command()
def get(
    name: NameArg,
    namespace: NamespaceOpt = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Follow the rollout live until it finishes.")
    ] = False,
    context: ContextOpt = None,
) -> None:
    """A rollout in full: steps with the current one marked, weights, last analysis per metric, evaluation
    and shadow; --watch redraws it on every change until it finishes (Ctrl-C stops watching)."""
    from rich.console import Console
    from rich.live import Live

    ns = _namespace(namespace, context)
    console = Console()
    if not watch:
        console.print(_render(_run(lambda c: c.get(ns, name), context), with_steps=True))
        return

    async def follow(c: Any) -> None:
        with Live(console=console, auto_refresh=False) as live:
            async for obj in c.changes(ns, name):
                live.update(_render(obj, with_steps=True), refresh=True)

    try:
        _run(follow, context)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@rollout.command()
def wait(
    name: NameArg,
    namespace: NamespaceOpt = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait at most.")] = 3600.0,
    context: ContextOpt = None,
) -> None:
    """Block until the rollout finishes: exit 0 Succeeded, 1 Failed/Aborted, 2 timeout, 3 not found."""
    from finserve.operator.client import settled
    from finserve.operator.status import Phase

    ns = _namespace(namespace, context)
    try:
        obj = _run(lambda c: c.wait(ns, name, timeout), context)
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
