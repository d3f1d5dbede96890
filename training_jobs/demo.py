"""The demo registry: three real versions of the default adapter, so a canary has somewhere to go.

1.0.0 trains on a per-intent subset for fewer epochs (LLM head + vote); 1.6.0 is the intent recipe
(LLM head + fine-tuned encoder + vote) whose LoRA was never tuned for answers; 2.1.0, the default,
takes 1.6.0's intent parts and adds the generator's LoRA tuned for answers (answers.yaml; default.yaml
builds the same version from scratch in one job). Versions already in the registry that pass
verification are kept (``make adapters`` is a cache hit then).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from finserve.contracts import AdapterCorrupt, AdapterRegistry

from .config import TrainConfig

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
DEMO_CONFIGS = (CONFIG_DIR / "small.yaml", CONFIG_DIR / "intent.yaml", CONFIG_DIR / "answers.yaml")


def build_demo(registry: AdapterRegistry, configs: Sequence[Path], force: bool = False) -> Iterator[str]:
    """Train each config whose version is missing (or corrupt, or ``force``); yields one line per config."""
    from .job import run_job

    for path in configs:
        config = TrainConfig.from_file(path)
        if not force and config.version in registry.versions(config.name):
            try:
                registry.verify(config.ref)
                yield f"kept     {config.ref} (already in {registry.root})"
                continue
            except AdapterCorrupt as exc:
                log.warning("%s; retraining", exc)
        result = run_job(config, registry, overwrite=True)
        acc = result.manifest.metrics["accuracy"]
        yield f"trained  {config.ref}: validation accuracy {acc:.4f} in {result.minutes:.1f} min"
