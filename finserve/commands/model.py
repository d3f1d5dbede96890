"""``finserve model``: convert the base model, report the CPU kernels, try the generator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    model_app = typer.Typer(help="The base LLM and the generator engine.", no_args_is_help=True)
    model_app.command("convert")(convert)
    model_app.command("generate")(generate)
    model_app.command("kernels")(kernels)
    app.add_typer(model_app, name="model")


def convert(
    data_dir: Annotated[
        Path | None, typer.Option(help="Data dir (default: FINSERVE_DATA_DIR or ./var).")
    ] = None,
) -> None:
    """Convert SmolLM2-135M-Instruct from the bundled GGUF to a safetensors folder (once)."""
    from finserve.serving.inference.base_model import ensure_base_model

    typer.echo(str(ensure_base_model(data_dir)))


def kernels() -> None:
    """Report the CPU's features and the C kernel variant this install runs (exit 1 without the extension)."""
    import json
    from dataclasses import asdict

    from finserve.serving.inference.cpu_kernels import kernel_report

    report = kernel_report()
    typer.echo(json.dumps(asdict(report), indent=2))
    if report.extension is None:  # an install built without a C compiler: say so to an image build
        typer.echo(report.problem, err=True)
        raise typer.Exit(1)


def generate(
    prompt: Annotated[str, typer.Argument(help="The user message.")],
    adapter: Annotated[
        str, typer.Option(help="NAME@VERSION from the registry; base@0.0.0 = no adapter.")
    ] = "base@0.0.0",
    max_tokens: Annotated[int, typer.Option(min=1, help="Completion token cap.")] = 64,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 0.0,
    system: Annotated[str | None, typer.Option(help="Optional system message.")] = None,
    registry: Annotated[
        str | None, typer.Option(help="Adapter registry root (default: FINSERVE_REGISTRY or data dir).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="GeneratorConfig YAML.")] = None,
) -> None:
    """Stream one completion from the generator engine (no guard, no retrieval: the raw model)."""
    import asyncio

    from finserve.contracts import AdapterRef
    from finserve.serving.inference import ChatMessage, GenerationRequest, GeneratorConfig, build_engine

    cfg = GeneratorConfig.from_file(config) if config else GeneratorConfig()
    if registry:
        cfg = cfg.model_copy(update={"registry": registry})
    messages = ([ChatMessage(role="system", content=system)] if system else []) + [
        ChatMessage(role="user", content=prompt)
    ]
    request = GenerationRequest(
        messages=messages, adapter=AdapterRef.parse(adapter), max_tokens=max_tokens, temperature=temperature
    )

    async def run() -> str | None:
        engine = build_engine(cfg)
        await engine.start()
        try:
            reason = None
            async for chunk in engine.stream(request):
                typer.echo(chunk.delta, nl=False)
                reason = chunk.finish_reason or reason
            typer.echo()
            return reason
        finally:
            await engine.stop()

    reason = asyncio.run(run())
    typer.echo(f"[finish_reason={reason}]", err=True)
