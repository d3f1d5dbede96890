"""The engine's own figures as Prometheus metrics, read when /metrics is scraped (no polling thread)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from finserve.contracts import metrics as names

from .types import EngineStats


class EngineCollector(Collector):
    """Slots, queue and token counters of one engine, labelled with the engine's name."""

    def __init__(self, engine: str, stats: Callable[[], EngineStats]) -> None:
        self.engine = engine
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats()
        gauges = (
            (names.ENGINE_SLOTS, "Parallel slots (sequences decoded together).", s.slots_total),
            (names.ENGINE_SLOTS_BUSY, "Slots running a request now.", s.slots_busy),
            (names.ENGINE_REQUESTS_DEFERRED, "Requests held until a slot frees.", s.requests_deferred),
        )
        counters = (
            (names.ENGINE_PROMPT_TOKENS_TOTAL, "Prompt tokens computed at prefill.", s.prompt_tokens_total),
            (names.ENGINE_GENERATED_TOKENS_TOTAL, "Tokens generated.", s.generated_tokens_total),
            (names.ENGINE_PROMPT_SECONDS_TOTAL, "Seconds in prefill.", s.prompt_seconds_total),
            (
                names.ENGINE_GENERATE_SECONDS_TOTAL,
                "Seconds generating, summed over slots.",
                s.generated_seconds_total,
            ),
            (
                names.ENGINE_SERVER_STARTS_TOTAL,
                "Engine servers started (one per adapter set).",
                s.server_starts,
            ),
        )
        for name, doc, value in gauges:
            family = GaugeMetricFamily(name, doc, labels=["engine"])
            family.add_metric([self.engine], value)
            yield family
        for name, doc, value in counters:
            family = CounterMetricFamily(name.removesuffix("_total"), doc, labels=["engine"])
            family.add_metric([self.engine], value)
            yield family
