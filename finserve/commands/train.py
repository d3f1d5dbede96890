"""``finserve train --config FILE``: fine-tune a LoRA adapter + intent head (and, with ``answers``, the
generator's LoRA for answers) and publish it to the registry."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        config: Path = typer.Option(
            ...,
            "--config",
            "-c",
            exists=True,
            dir_okay=False,
            help="Training config YAML (training_jobs/configs/*.yaml).",
        ),
        registry: str | None = typer.Option(
            None,
            "--registry",
            help="Registry root (path or fsspec URL); default: env FINSERVE_REGISTRY or <data dir>/adapters.",
        ),
        version: str | None = typer.Option(
            None, "--version", help="Publish under this version instead of the config's."
        ),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace the version if it already exists."
        ),
        split_dir: Path | None = typer.Option(
            None,
            "--split-dir",
            help="Also write train.csv / validation.csv of the split here (for finserve eval).",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
    ) -> None:
        """Stratified split, LoRA (QLoRA on CUDA) + intent head, early stopping, publish NAME@VERSION."""
        import logging

        from finserve.contracts import AdapterRegistry
        from finserve.serving.paths import registry_root
        from finserve.training.config import TrainConfig
        from finserve.training.job import run_job

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        cfg = TrainConfig.from_file(config)
        if version:
            cfg = TrainConfig.model_validate({**cfg.model_dump(), "version": version})
        if split_dir:
            _write_split(cfg, split_dir)
        try:
            result = run_job(cfg, AdapterRegistry(registry_root(registry)), overwrite=overwrite)
        except FileExistsError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
        if as_json:
            typer.echo(result.model_dump_json(indent=2))
            return
        m = result.manifest
        intent = f"epoch {result.best_epoch}" if result.best_epoch else f"intent parts of {cfg.intent_from}"
        typer.echo(
            f"published {m.ref}: validation accuracy {m.metrics['accuracy']:.4f}, "
            f"macro-F1 {m.metrics['macro_f1']:.4f} ({intent}), {result.minutes:.1f} min"
        )
        if result.answer_epochs:
            last = result.answer_epochs[-1]
            typer.echo(
                f"answers: train loss {last.train_loss:.4f}"
                + (f", dev loss {last.dev_loss:.4f}" if last.dev_loss is not None else "")
            )


def _write_split(cfg, split_dir: Path) -> None:  # noqa: ANN001 - TrainConfig is imported lazily
    from finserve.serving.paths import banking77_csv
    from finserve.training.data import load_splits, write_csv

    splits = load_splits(cfg.data.csv or banking77_csv())
    write_csv(splits.train, split_dir / "train.csv")
    write_csv(splits.validation, split_dir / "validation.csv")
    typer.echo(f"wrote {split_dir / 'train.csv'} and {split_dir / 'validation.csv'}")
