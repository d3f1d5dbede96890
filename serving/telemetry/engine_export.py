"""A Generator replica's engine figures (slots, queue, tokens, seconds), exported through Ray's metrics agent.

In the in-process stack the gateway's /metrics collects them from the engine directly
(``inference.engine_metrics.EngineCollector``). In the Ray graph the engine lives in the Generator replica,
another process, with no listener of its own (several replicas share a node and its ports). There Ray Serve's
metrics API records them in the replica, and Ray's per-node metrics agent serves them on the node's metrics
export port (KubeRay's ``metrics-export-port``, 8080; ``finserve up``: ``exposure.ray_metrics_port``),
tagged with ``deployment``, ``replica`` and ``application`` and, Ray's rule, named with a ``ray_`` prefix:
``ray_finserve_engine_generated_tokens_total{engine="transformers", replica=...}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from finserve.contracts import metrics as names

from ..inference.types import EngineStats

log = logging.getLogger(__name__)

# EngineStats field -> (metric name, description); gauges are set, counters grow by what the engine added.
GAUGES = {
    "slots_total": (names.ENGINE_SLOTS, "Parallel slots (sequences decoded together)."),
    "slots_busy": (names.ENGINE_SLOTS_BUSY, "Slots running a request now."),
    "requests_deferred": (names.ENGINE_REQUESTS_DEFERRED, "Requests held until a slot frees."),
}
COUNTERS = {
    "prompt_tokens_total": (names.ENGINE_PROMPT_TOKENS_TOTAL, "Prompt tokens computed at prefill."),
    "generated_tokens_total": (names.ENGINE_GENERATED_TOKENS_TOTAL, "Tokens generated."),
    "prompt_seconds_total": (names.ENGINE_PROMPT_SECONDS_TOTAL, "Seconds in prefill."),
    "generated_seconds_total": (
        names.ENGINE_GENERATE_SECONDS_TOTAL,
        "Seconds generating, summed over slots.",
    ),
    "server_starts": (names.ENGINE_SERVER_STARTS_TOTAL, "Engine servers started (one per adapter set)."),
}


def counter_increments(previous: dict[str, float], current: dict[str, float]) -> dict[str, float]:
    """How much each counter grew since the last export. A value below the last one means the engine's
    counters started over (a new engine in this replica): all of it is new."""
    out = {}
    for key, value in current.items():
        before = previous.get(key, 0.0)
        out[key] = value - before if value >= before else value
    return out


class EngineMetricsExporter:
    """Copies ``stats()`` into Ray Serve metrics every ``interval_s`` seconds while :meth:`run` runs."""

    def __init__(self, engine: str, stats: Callable[[], EngineStats], interval_s: float = 5.0) -> None:
        from ray.serve import metrics  # only in a Ray Serve replica

        self.stats = stats
        self.interval_s = interval_s
        self._gauges: dict[str, Any] = {}
        self._counters: dict[str, Any] = {}
        for field, (name, doc) in GAUGES.items():
            self._gauges[field] = metrics.Gauge(name, description=doc, tag_keys=("engine",))
            self._gauges[field].set_default_tags({"engine": engine})  # a dict each: Ray adds its tags to it
        for field, (name, doc) in COUNTERS.items():
            # Ray exports a counter with "_total" appended: register the name without it.
            self._counters[field] = metrics.Counter(
                name.removesuffix("_total"), description=doc, tag_keys=("engine",)
            )
            self._counters[field].set_default_tags({"engine": engine})
        self._last: dict[str, float] = {}

    def export(self) -> None:
        snapshot = self.stats()
        for field, gauge in self._gauges.items():
            gauge.set(float(getattr(snapshot, field)))
        current = {field: float(getattr(snapshot, field)) for field in self._counters}
        for field, grew in counter_increments(self._last, current).items():
            if grew > 0:
                self._counters[field].inc(grew)
        self._last = current

    async def run(self) -> None:
        while True:
            try:
                self.export()
            except Exception:  # noqa: BLE001 - figures are best effort; serving goes on
                log.warning("engine metrics not exported this round", exc_info=True)
            await asyncio.sleep(self.interval_s)
