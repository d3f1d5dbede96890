"""The generator's domain errors (besides the registry's AdapterNotFound / AdapterCorrupt).

The serving layer maps them to status codes in serving/errors.py.
"""

from __future__ import annotations


class EngineNotReady(RuntimeError):
    """generate() or stream() before start() finished, or after stop(). Retry later (503)."""


class EngineOverloaded(RuntimeError):
    """The request queue is full (``max_queue``): backpressure, retry later (503)."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PromptTooLong(ValueError):
    """The templated prompt plus max_tokens exceeds the model's context window (400)."""


class AdapterIncompatible(ValueError):
    """The adapter's manifest names another base model than the one this engine serves, or its intent head
    reads query embeddings from another embedder than the deployment runs (500)."""
