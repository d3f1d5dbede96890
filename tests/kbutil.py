"""Small real knowledge bases shared by several test folders: a few Banking77 intents, a few real
examples each, in a Milvus Lite file (the 77 answers always go in too). Seconds to build, yet
retrieval still chooses between real competitors.

Serving's retrieval package pulls in heavy libraries, so it is imported inside the functions:
importing this module stays cheap for test folders that only collect.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from finserve.serving.retrieval import Embedder


def banking77_rows(intents: Sequence[str], per_intent: int) -> list[tuple[str, str]]:
    """The first ``per_intent`` Banking77 rows of each of ``intents``, in file order."""
    from finserve.serving.paths import banking77_csv
    from finserve.serving.retrieval import read_banking77

    counts = dict.fromkeys(intents, 0)
    rows = []
    for text, intent in read_banking77(banking77_csv()):
        if intent in counts and counts[intent] < per_intent:
            rows.append((text, intent))
            counts[intent] += 1
    return rows


def build_index(path: Path, rows: list[tuple[str, str]], embedder: Embedder | None = None) -> Path:
    """A Milvus Lite file at ``path`` with the 77 answers and ``rows`` as examples (no L2 cache)."""
    from finserve.serving.retrieval import RetrievalConfig, ingest

    ingest(
        RetrievalConfig(milvus_uri=str(path), redis_url=None), rows=rows, progress=False, embedder=embedder
    )
    return path
