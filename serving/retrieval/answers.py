"""The answers partition held in memory: exact cosine search without a Milvus round trip.

An index build holds one answer per intent (77 for Banking77) and never changes once sealed, while every
cache-missing query searches the answers once and, for about a third of queries, a second time for the
intents its nearest examples name. Each of those searches is a pymilvus round trip (about 2-2.5 ms beyond
the search itself); a dot product over 77 normalised vectors costs microseconds. The table is loaded once
per index version and is exact, where HNSW is approximate (on 77 vectors with ef >= 64 it returns the
same documents). Examples (8,000 rows) stay in Milvus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .types import Hit


@dataclass(frozen=True)
class AnswerTable:
    """Every answer document of one index build, with its unit vector."""

    index_version: str
    ids: list[str]
    texts: list[str]
    intents: list[str]
    tenants: list[str]
    vectors: np.ndarray  # (n, dim) float32, each row normalised

    @classmethod
    def build(cls, index_version: str, rows: Sequence[dict]) -> AnswerTable:
        """From rows carrying id, text, intent, tenant and vector (what a Milvus query returns)."""
        vectors = np.asarray([r["vector"] for r in rows], dtype=np.float32).reshape(len(rows), -1)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms == 0, 1.0, norms)
        return cls(
            index_version=index_version,
            ids=[str(r["id"]) for r in rows],
            texts=[r["text"] for r in rows],
            intents=[r["intent"] for r in rows],
            tenants=[r["tenant"] for r in rows],
            vectors=vectors,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, vector: np.ndarray, tenant: str, intents: Sequence[str] | None, limit: int) -> list[Hit]:
        """The ``limit`` answers of ``tenant`` (and of ``intents`` if given) closest to ``vector`` by cosine."""
        if not self.ids or limit <= 0:
            return []
        wanted = set(intents) if intents else None
        keep = [
            i
            for i in range(len(self.ids))
            if self.tenants[i] == tenant and (wanted is None or self.intents[i] in wanted)
        ]
        if not keep:
            return []
        query = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(query))
        scores = self.vectors[keep] @ (query / norm if norm else query)
        # Stable sort on -score: equal scores keep index order, so a result never depends on the run.
        order = np.argsort(-scores, kind="stable")[:limit]
        return [
            Hit(
                id=self.ids[keep[j]],
                text=self.texts[keep[j]],
                intent=self.intents[keep[j]],
                kind="answer",
                tenant=self.tenants[keep[j]],
                score=float(scores[j]),
            )
            for j in order
        ]
