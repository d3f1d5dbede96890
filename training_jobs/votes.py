"""Retrieval votes for validation rows, as the served pipeline will see them.

Serving mixes the adapter head's probabilities with a vote over the ``example_k`` nearest
training examples that retrieval returns (MiniLM cosine similarity over the training split).
To select and report what is served, training computes the same vote for each validation row:
the same embedder, the same training rows as the index, exact top-k instead of Milvus's HNSW.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from finserve.serving.intent.vote import vote


@dataclass(frozen=True)
class _Neighbour:
    intent: str
    score: float


class NeighbourIndex:
    """The training part embedded once; votes for any queries, optionally leaving a row of the index out."""

    def __init__(self, index_rows: Sequence[tuple[str, str]]) -> None:
        from finserve.serving.retrieval import Embedder

        self._embedder = Embedder()
        self._index = self._embedder.embed([t for t, _ in index_rows])
        self._intents = [c for _, c in index_rows]
        self._position = {text: i for i, (text, _) in reversed(list(enumerate(index_rows)))}

    @property
    def embedder_id(self) -> str:
        return self._embedder.model_id

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts`` from the index's embedder."""
        return self._embedder.embed(list(texts))

    def vectors_of(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of texts that are index rows, without embedding them again (equal texts, equal vectors)."""
        return self._index[[self._position[t] for t in texts]]

    def votes(
        self,
        queries: Sequence[str] | None,
        k: int,
        temperature: float,
        exclude: Sequence[int] | None = None,
        batch: int = 512,
        vectors: np.ndarray | None = None,
    ) -> list[dict[str, float]]:
        """The vote for each query; ``exclude[i]``: the index position query ``i`` must not find (itself).

        ``queries=None`` with ``exclude``: the queries are those index rows themselves (no re-embedding).
        ``vectors``: the queries' embeddings when the caller already has them.
        """
        if vectors is not None:
            found = vectors
        elif queries is None:
            if exclude is None:
                raise ValueError("queries=None needs exclude (the index rows to query)")
            found = self._index[list(exclude)]
        else:
            found = self._embedder.embed(list(queries))
        if exclude is not None and len(exclude) != len(found):
            raise ValueError("exclude needs one index position per query")
        out: list[dict[str, float]] = []
        for start in range(0, len(found), batch):
            sims = found[start : start + batch] @ self._index.T
            if exclude is not None:
                sims[np.arange(sims.shape[0]), list(exclude[start : start + batch])] = -np.inf
            top = np.argpartition(-sims, min(k, sims.shape[1] - 1), axis=1)[:, :k]
            for row, cols in enumerate(top):
                hits = [
                    _Neighbour(self._intents[c], float(sims[row, c]))
                    for c in cols
                    if np.isfinite(sims[row, c])
                ]
                out.append(vote(hits, temperature))
        return out


def dense_votes(
    votes: Sequence[dict[str, float]], labels: Sequence[str], dtype: np.dtype = np.float32
) -> np.ndarray:
    """The votes as a (rows, labels) matrix in ``labels`` order (intents a row did not vote for: 0)."""
    column = {label: i for i, label in enumerate(labels)}
    dense = np.zeros((len(votes), len(labels)), dtype=dtype)
    for row, dist in enumerate(votes):
        for intent, p in dist.items():
            dense[row, column[intent]] = p
    return dense


def mixed_predictions(
    head_probs: np.ndarray, labels: Sequence[str], votes: Sequence[dict[str, float]], weight: float
) -> list[str]:
    """argmax of ``(1 - weight) * head + weight * vote`` per row (the serving rule, vectorised)."""
    mixed = (1 - weight) * head_probs
    if weight > 0:
        mixed = mixed + weight * dense_votes(votes, labels, head_probs.dtype)
    # Ties go to the alphabetically first label, as in vote.best: labels are sorted, argmax takes the first.
    return [labels[i] for i in mixed.argmax(axis=1)]
