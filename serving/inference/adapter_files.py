"""Fetching an adapter for an engine: the registry version, where its folder keeps the PEFT files, and
checks that it suits the base model and loads, before any model sees it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from finserve.contracts import AdapterCorrupt, AdapterRef, AdapterRegistry

from .errors import AdapterIncompatible


async def fetch_adapter(registry: AdapterRegistry, ref: AdapterRef, base_model_id: str) -> Path:
    """``ref``'s verified registry folder (fetched off the event loop: the registry hashes the files).
    Raises AdapterNotFound or AdapterCorrupt, or AdapterIncompatible when it was trained on another
    base model than ``base_model_id``."""
    manifest, path = await asyncio.to_thread(registry.fetch, ref)
    if manifest.base_model != base_model_id:
        raise AdapterIncompatible(
            f"adapter {ref} was trained on {manifest.base_model}, this engine serves {base_model_id}"
        )
    return path


def adapter_folder(path: Path) -> Path:
    """The folder holding adapter_config.json: the registry folder itself or its only subfolder.

    PEFT saves a named adapter into a subfolder of the output dir; both layouts occur.
    """
    if (path / "adapter_config.json").is_file():
        return path
    found = [p.parent for p in path.glob("*/adapter_config.json")]
    if len(found) != 1:
        raise AdapterCorrupt(f"{path} holds {len(found)} adapter configs, expected exactly one")
    return found[0]
