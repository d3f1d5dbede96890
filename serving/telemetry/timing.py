"""Time to first token and inter-token latency of one generation, for the latency histograms.

TTFT runs from the request's arrival at the gateway (``RequestContext.started``) to the first generated
token: for a stream, the first chunk with text that reaches the gateway; for a whole answer, the
engine's own first-token time (``GenerationResult.first_token_s``, counted from when the engine took
the request) added to the time the request reached the generator call. Inter-token latency is the
request's mean gap between generated tokens after the first ((last - first) / (tokens - 1)); a
one-token answer has none.
"""

from __future__ import annotations

import time
from typing import Any


class TokenClock:
    """Marks token arrivals of one generation; ``observe`` feeds the histograms once at the end."""

    def __init__(self, started: float) -> None:
        self.started = started  # perf_counter() of the request's arrival
        self.first: float | None = None
        self.last: float | None = None

    def tick(self, now: float | None = None) -> None:
        """A chunk with generated text arrived."""
        now = time.perf_counter() if now is None else now
        if self.first is None:
            self.first = now
        self.last = now

    def engine_timing(self, called: float, first_token_s: float | None, last_token_s: float | None) -> None:
        """A whole answer's timing as the engine measured it, relative to ``called`` (perf_counter())."""
        if first_token_s is not None:
            self.first = called + first_token_s
            self.last = called + (last_token_s if last_token_s is not None else first_token_s)

    def ttft(self) -> float | None:
        return None if self.first is None else max(self.first - self.started, 0.0)

    def inter_token(self, tokens: int) -> float | None:
        if self.first is None or self.last is None or tokens < 2:
            return None
        return max(self.last - self.first, 0.0) / (tokens - 1)

    def observe(self, metrics: Any, labels: tuple[str, str, str], tokens: int) -> None:
        """Record TTFT and mean inter-token latency under the request's (model, adapter, version)."""
        ttft = self.ttft()
        if ttft is not None:
            metrics.ttft.labels(*labels).observe(ttft)
        itl = self.inter_token(tokens)
        if itl is not None:
            metrics.inter_token.labels(*labels).observe(itl)
