"""Where finserve keeps its files: one data dir (index, audit log, converted model, adapters)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """``FINSERVE_DATA_DIR`` or ./var; created on first use."""
    path = Path(os.environ.get("FINSERVE_DATA_DIR", "var")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def banking77_csv() -> Path:
    """The Banking77 training CSV: ``FINSERVE_BANKING77_CSV`` or the repository's data/banking77/train.csv
    (CC BY 4.0, licence and attribution beside it)."""
    env = os.environ.get("FINSERVE_BANKING77_CSV")
    if env:
        return Path(env)
    return REPO_ROOT / "data" / "banking77" / "train.csv"


def banking77_categories() -> Path:
    return banking77_csv().parent / "categories.json"


def shipped_registry() -> Path:
    """Adapter versions that ship with the repository (data/adapters: a registry tree), so `make up` serves a
    trained default without training first; `make adapters` rebuilds them."""
    return REPO_ROOT / "data" / "adapters"


def registry_root(explicit: str | None = None) -> str:
    """The adapter registry: an explicit root, ``FINSERVE_REGISTRY``, or data_dir()/adapters."""
    return explicit or os.environ.get("FINSERVE_REGISTRY") or str(data_dir() / "adapters")
