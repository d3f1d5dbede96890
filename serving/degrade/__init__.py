"""Graceful degradation: request deadlines, the curated fallback answer and the response cache.

Pure decisions live in deadline.py and fallback.py; response_cache.py is the only I/O (L1 + Redis L2).
"""

from .config import DegradeConfig, ResponseCacheConfig
from .deadline import Deadline, DeadlineExceeded
from .fallback import curated_answer, degradable

__all__ = [
    "Deadline",
    "DeadlineExceeded",
    "DegradeConfig",
    "ResponseCacheConfig",
    "curated_answer",
    "degradable",
]
