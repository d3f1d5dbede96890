"""Retrieval's domain errors; serving maps both to 503 with a Retry-After header."""

from __future__ import annotations


class VectorStoreUnavailable(Exception):
    """Milvus cannot be reached (or failed recently: the retriever fails fast until ``retry_after_s``)."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class IndexMissing(VectorStoreUnavailable):
    """Milvus answers but the collection does not exist yet, or was built with another embedder."""
