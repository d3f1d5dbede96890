"""The generator's domain errors (besides the registry's AdapterNotFound / AdapterCorrupt).

The serving layer maps them to status codes in serving/errors.py.
"""

from __future__ import annotations

from finserve.contracts.registry import AdapterIncompatible  # re-exported: the engines raise it (500)


class EngineNotReady(RuntimeError):
    """generate() or stream() before start() finished, or after stop(). Retry later (503)."""


class EngineOverloaded(RuntimeError):
    """The request queue is full (``max_queue``): backpressure, retry later (503)."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PromptTooLong(ValueError):
    """The templated prompt plus max_tokens exceeds the model's context window (400)."""


class TokenizerUnavailable(RuntimeError):
    """A tokenizer folder lacks tokenizer.json or a chat template, or a GGUF's tokenizer could not be read
    out: the engine cannot start (a startup error, never a request's)."""


class ProviderUnavailable(RuntimeError):
    """An upstream provider (OpenAI-compatible HTTP) failed: unreachable, timed out, or answered an error.
    A failover pool tries the next provider; alone it is a 503."""


class ProvidersUnavailable(RuntimeError):
    """Every provider of a failover pool failed or is skipped by its open circuit breaker (503)."""

    def __init__(self, message: str, retry_after_s: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


__all__ = [
    "AdapterIncompatible",
    "EngineNotReady",
    "EngineOverloaded",
    "PromptTooLong",
    "ProviderUnavailable",
    "ProvidersUnavailable",
    "TokenizerUnavailable",
]
