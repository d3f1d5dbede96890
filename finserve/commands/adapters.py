"""``finserve adapters``: list, show and verify registry versions; build the demo registry."""

from __future__ import annotations

import json
from pathlib import Path

import typer

REGISTRY_HELP = (
    "Registry root (local path or fsspec URL); default: env FINSERVE_REGISTRY or <data dir>/adapters."
)


def _registry(root: str | None):  # noqa: ANN202 - contracts import stays inside the command
    from finserve.contracts import AdapterRegistry
    from finserve.serving.paths import registry_root

    return AdapterRegistry(registry_root(root))


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Adapter registry: list, show, verify, and build the demo versions.", no_args_is_help=True
    )
    app.add_typer(group, name="adapters")

    @group.command("list")
    def list_(
        registry: str | None = typer.Option(None, "--registry", help=REGISTRY_HELP),
        as_json: bool = typer.Option(False, "--json", help="One JSON array of manifests."),
    ) -> None:
        """Every adapter version with its base model, validation metrics and checksum."""
        from rich.console import Console
        from rich.table import Table

        reg = _registry(registry)
        manifests = reg.list()
        if as_json:
            typer.echo(json.dumps([m.model_dump(mode="json") for m in manifests], indent=2))
            return
        table = Table(title=f"adapters in {reg.root}")
        for col in ("adapter", "base model", "accuracy", "macro-F1", "created (UTC)", "checksum"):
            # Names and checksums are copied into other commands: never wrap them.
            table.add_column(col, no_wrap=col in ("adapter", "checksum"), overflow="fold")
        for m in manifests:
            acc, f1 = m.metrics.get("accuracy"), m.metrics.get("macro_f1")
            table.add_row(
                str(m.ref),
                m.base_model,
                f"{acc:.4f}" if acc is not None else "-",
                f"{f1:.4f}" if f1 is not None else "-",
                m.created_at.strftime("%Y-%m-%d %H:%M"),
                m.checksum[:12],
            )
        Console().print(table if manifests else f"no adapters in {reg.root}")

    @group.command("show")
    def show(
        ref: str = typer.Argument(..., help="NAME@VERSION"),
        registry: str | None = typer.Option(None, "--registry", help=REGISTRY_HELP),
    ) -> None:
        """The manifest of one version, as JSON."""
        from finserve.contracts import AdapterNotFound

        try:
            manifest = _registry(registry).manifest(ref)
        except (AdapterNotFound, ValueError) as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
        typer.echo(json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True))

    @group.command("verify")
    def verify(
        ref: str | None = typer.Argument(None, help="NAME@VERSION; default: every version."),
        registry: str | None = typer.Option(None, "--registry", help=REGISTRY_HELP),
    ) -> None:
        """Recompute every file hash against the manifests; exit 1 when any version fails."""
        from finserve.contracts import AdapterCorrupt, AdapterNotFound, AdapterRef

        reg = _registry(registry)
        refs = [AdapterRef.parse(ref)] if ref else [m.ref for m in reg.list()]
        if not refs:
            typer.echo(f"no adapters in {reg.root}", err=True)
            raise typer.Exit(1)
        failed = 0
        for r in refs:
            try:
                reg.verify(r)
                typer.echo(f"ok       {r}")
            except (AdapterCorrupt, AdapterNotFound) as exc:
                failed += 1
                typer.echo(f"FAILED   {r}: {exc}")
        if failed:
            raise typer.Exit(1)

    @group.command("seed")
    def seed(
        registry: str | None = typer.Option(None, "--registry", help=REGISTRY_HELP),
        source: Path | None = typer.Option(
            None,
            "--from",
            help="A registry tree to copy from (default: the versions shipped in data/adapters).",
        ),
    ) -> None:
        """Copy the shipped adapter versions into the registry unless it already holds them; each verified."""
        from finserve.contracts import AdapterCorrupt, AdapterRegistry
        from finserve.serving.paths import shipped_registry

        src = AdapterRegistry(source or shipped_registry())
        reg = _registry(registry)
        for manifest in src.list():
            if manifest.version in reg.versions(manifest.name):
                try:
                    reg.verify(manifest.ref)
                    typer.echo(f"kept     {manifest.ref} (already in {reg.root})")
                    continue
                except AdapterCorrupt as exc:
                    typer.echo(f"{exc}; copying it again", err=True)
            _, folder = src.fetch(manifest.ref)  # verified against its manifest before anything is copied
            reg.publish(folder, manifest, overwrite=True)
            reg.verify(manifest.ref)
            typer.echo(f"seeded   {manifest.ref} into {reg.root}")

    @group.command("demo")
    def demo(
        registry: str | None = typer.Option(None, "--registry", help=REGISTRY_HELP),
        config: list[Path] | None = typer.Option(
            None, "--config", help="Training configs to build, in order (default: the two demo versions)."
        ),
        force: bool = typer.Option(False, "--force", help="Retrain versions that already exist."),
    ) -> None:
        """Train the demo versions of the default adapter unless the registry already has them (verified)."""
        import logging

        from finserve.training.demo import DEMO_CONFIGS, build_demo

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        reg = _registry(registry)
        for line in build_demo(reg, config or list(DEMO_CONFIGS), force=force):
            typer.echo(line)
