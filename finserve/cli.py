"""The ``finserve`` command: assembles the commands each part registers in finserve/commands/.

Every module in finserve.commands exposes ``register(app: typer.Typer) -> None``. Heavy imports
(torch, ray, presidio) happen inside the commands, so ``finserve --help`` stays fast.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil

import typer

from finserve import commands

app = typer.Typer(
    name="finserve",
    help="Guarded RAG serving for domain-tuned LLMs: serve, ingest, train, evaluate, roll out.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _version(show: bool) -> None:
    if show:
        # The installed distribution's version: pyproject.toml's, the one source (the chart's
        # appVersion and the image tags follow it; tests/cli/test_version.py checks they agree).
        typer.echo(f"finserve {importlib.metadata.version('finserve')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_version, help="Print the version and exit."
    ),
) -> None:
    """Guarded RAG serving for domain-tuned LLMs: serve, ingest, train, evaluate, roll out."""


for _info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
    importlib.import_module(f"{commands.__name__}.{_info.name}").register(app)


if __name__ == "__main__":
    app()
