"""The gateway's Prometheus metrics (names from contracts.metrics; labels never carry content)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from finserve.contracts import metrics as names

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)


class ServingMetrics:
    """One set of collectors per app instance (own registry: no process-global state in tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        labels = list(names.MODEL_LABELS)
        self.requests = Counter(names.REQUESTS_TOTAL.removesuffix("_total"), "Finished requests.",
                                [*labels, "code"], registry=r)
        self.latency = Histogram(names.REQUEST_DURATION.removesuffix("_seconds") + "_seconds",
                                 "End-to-end request latency.", labels, buckets=_LATENCY_BUCKETS, registry=r)
        self.stage = Histogram(names.STAGE_DURATION, "Per-stage latency.", ["stage"],
                               buckets=_LATENCY_BUCKETS, registry=r)
        self.pii = Counter(names.PII_FINDINGS_TOTAL.removesuffix("_total"), "PII entities found.",
                           [*labels, "stage", "entity"], registry=r)
        self.intent_agreement = Counter(names.INTENT_AGREEMENT_TOTAL.removesuffix("_total"),
                                        "Whether the adapter's intent agreed with retrieval's.",
                                        [*labels, "agree"], registry=r)
        self.tokens = Counter(names.GENERATED_TOKENS_TOTAL.removesuffix("_total"), "Generated tokens.",
                              labels, registry=r)
        self.prompt_tokens = Counter(names.PROMPT_TOKENS_TOTAL.removesuffix("_total"),
                                     "Prompt tokens, computed at prefill or reused from the prefix cache.",
                                     [*labels, "source"], registry=r)
        self.queue = Gauge(names.GENERATOR_QUEUE_DEPTH, "Requests waiting for or running on the generator.",
                           ["pool"], registry=r)
        self.cache = Counter(names.CACHE_LOOKUPS_TOTAL.removesuffix("_total"), "Retrieval cache outcomes.",
                             ["tier", "result"], registry=r)
