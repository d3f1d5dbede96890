"""Replicas that only scan text, kept free of torch and transformers.

spaCy's thinc imports torch whenever it is installed, and Presidio imports transformers for recognizers we do not
run; neither is used by the guard's pipelines (spaCy's CNN models, Presidio's pattern and spaCy recognizers). In a
replica that scans and runs no model (the Gateway, the Guard and Audit deployments) that cost about 320 MB
resident per process, about three quarters of what the guard holds (measured: docs/benchmarks.md, "Replicas
that only scan"). :func:`without` makes ``import torch`` / ``import transformers`` fail while the guard's
libraries are imported, so they record them as absent, exactly as on a machine without them.

Only for a process that will never need the blocked modules: a library that recorded them absent will not look
again, so the Gateway uses it only when no retriever (whose embedder may run on torch) shares its process, and no
replica uses it for a spaCy pipeline with a transformer component (:func:`guard_runs_on_torch`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from .guard.config import GuardConfig

UNUSED_BY_SCANS = ("torch", "transformers")


@contextlib.contextmanager
def without(modules: tuple[str, ...] = UNUSED_BY_SCANS) -> Iterator[None]:
    """While inside, importing ``modules`` raises ImportError (as when they are not installed); modules this
    process already imported are left alone. Afterwards they import again for code that asks directly."""
    blocked = [name for name in modules if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not here" marker
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def guard_runs_on_torch(config: GuardConfig) -> bool:
    """Whether the guard's spaCy pipeline has a transformer component (en_core_web_trf and the like run on torch),
    read from its meta.json without importing spaCy. Unreadable counts as yes: blocking is only an optimisation."""
    if config.spacy_model is None:
        return False  # patterns, checksums and a blank tokenizer
    folder = Path(config.spacy_model)
    if not folder.is_dir():
        try:
            spec = importlib.util.find_spec(config.spacy_model)
        except (ImportError, ValueError):
            return True
        locations = list(spec.submodule_search_locations or []) if spec else []
        if not locations:
            return True
        folder = Path(locations[0])
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    components = set(meta.get("pipeline", [])) | set(meta.get("components", []))
    requirements = " ".join(meta.get("requirements", []))
    return bool(components & {"transformer", "curated_transformer"}) or "transformers" in requirements
