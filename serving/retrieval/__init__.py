"""Retrieval: the knowledge base (Banking77 answers and examples) in Milvus, searched by masked query
through an in-process L1 and a Redis L2 cache.

Importing this package is cheap: torch, onnxruntime, pymilvus and redis load when a Retriever,
Embedder or ingest runs.
"""

from .config import RetrievalConfig
from .embedder import Embedder
from .errors import IndexMissing, VectorStoreUnavailable
from .ingest import index_exists, ingest
from .kb import default_split, read_banking77
from .retriever import Retriever
from .types import Document, Hit, IngestReport, RetrievalResult, SearchFilters

__all__ = [
    "Document",
    "Embedder",
    "Hit",
    "IndexMissing",
    "IngestReport",
    "RetrievalConfig",
    "RetrievalResult",
    "Retriever",
    "SearchFilters",
    "VectorStoreUnavailable",
    "default_split",
    "index_exists",
    "ingest",
    "read_banking77",
]
