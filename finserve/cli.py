"""The ``finserve`` command: assembles the commands each part registers in finserve/commands/.

Every module in finserve.commands exposes ``register(app: typer.Typer) -> None``. Heavy imports
(torch, ray, presidio) happen inside the commands, so ``finserve --help`` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

from finserve import commands

app = typer.Typer(
    name="finserve",
    help="Guarded RAG serving for domain-tuned LLMs: serve, ingest, train, evaluate, roll out.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

for _info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
    importlib.import_module(f"{commands.__name__}.{_info.name}").register(app)


if __name__ == "__main__":
    app()
