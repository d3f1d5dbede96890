"""The gateway's Prometheus metrics (names from contracts.metrics; labels never carry content).

Every label value is bounded: models are served route names, tenants are the configured ones (others
collapse into ``other``), so request content can neither grow /metrics nor break its encoding.
"""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from finserve.contracts import metrics as names

OTHER_TENANT = "other"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)
# Finer near 1: the analysis asks whether a canary says nearly the same thing, not whether it is on topic.
_SIMILARITY_BUCKETS = (0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0)
# Time to first token spans queueing and prefill (tens of ms on a GPU, seconds on a loaded CPU).
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 15, 30)
# Per-token decode gaps: a few ms on a GPU, 10-100 ms on a CPU.
_ITL_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1)
_RATIO_BUCKETS = (0.25, 0.5, 0.75, 0.9, 1.1, 1.25, 1.5, 2, 4)


class ServingMetrics:
    """One set of collectors per app instance (own registry: no process-global state in tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        labels = list(names.MODEL_LABELS)
        self.requests = Counter(
            names.REQUESTS_TOTAL.removesuffix("_total"), "Finished requests.", [*labels, "code"], registry=r
        )
        self.latency = Histogram(
            names.REQUEST_DURATION.removesuffix("_seconds") + "_seconds",
            "End-to-end request latency.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            names.STAGE_DURATION, "Per-stage latency.", ["stage"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.pii = Counter(
            names.PII_FINDINGS_TOTAL.removesuffix("_total"),
            "PII entities found.",
            [*labels, "stage", "entity", "tenant"],
            registry=r,
        )
        self.context_held_back = Counter(
            names.CONTEXT_HELD_BACK_TOTAL.removesuffix("_total"),
            "Retrieved chunks held back from the prompt by the context guard.",
            [*labels, "tenant"],
            registry=r,
        )
        self.out_of_scope = Counter(
            names.OUT_OF_SCOPE_TOTAL.removesuffix("_total"),
            "Questions far from everything the knowledge base covers, answered with the configured reply.",
            [*labels, "tenant"],
            registry=r,
        )
        self.kb_quarantined = Gauge(
            names.KB_QUARANTINED_DOCUMENTS,
            "Knowledge documents quarantined at ingest for PII.",
            ["policy", "entity"],
            registry=r,
        )
        self.intent_agreement = Counter(
            names.INTENT_AGREEMENT_TOTAL.removesuffix("_total"),
            "Whether the version's own intent (head, without the retrieval vote) "
            "agreed with the retrieval vote.",
            [*labels, "agree"],
            registry=r,
        )
        self.tokens = Counter(
            names.GENERATED_TOKENS_TOTAL.removesuffix("_total"), "Generated tokens.", labels, registry=r
        )
        self.prompt_tokens = Counter(
            names.PROMPT_TOKENS_TOTAL.removesuffix("_total"),
            "Prompt tokens, computed at prefill or reused from the prefix cache.",
            [*labels, "source"],
            registry=r,
        )
        self.ttft = Histogram(
            names.TIME_TO_FIRST_TOKEN,
            "Time from the request's arrival to its first generated token.",
            labels,
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.inter_token = Histogram(
            names.INTER_TOKEN_LATENCY,
            "A request's mean time between generated tokens after the first.",
            labels,
            buckets=_ITL_BUCKETS,
            registry=r,
        )
        self.queue = Gauge(
            names.GENERATOR_QUEUE_DEPTH,
            "Requests waiting for or running on the generator.",
            ["pool"],
            registry=r,
        )
        self.cache = Counter(
            names.CACHE_LOOKUPS_TOTAL.removesuffix("_total"),
            "Retrieval cache outcomes.",
            ["tier", "result"],
            registry=r,
        )
        self.answer_cache = Counter(
            names.RESPONSE_CACHE_LOOKUPS_TOTAL.removesuffix("_total"),
            "Response cache lookups of greedy requests.",
            ["tier", "result"],
            registry=r,
        )
        self.degraded = Counter(
            names.DEGRADED_RESPONSES_TOTAL.removesuffix("_total"),
            "Answers given without the model (fallback or cached) and why.",
            [*labels, "kind", "cause"],
            registry=r,
        )
        self.breaker_open = Gauge(
            names.CIRCUIT_BREAKER_OPEN,
            "1 while a circuit breaker is open: generator (this gateway's own: calls refused at once); "
            "redis_l2, vector_store (the retriever's, as this gateway's requests last found them).",
            ["breaker"],
            registry=r,
        )
        self.vector_store_unavailable = Counter(
            names.VECTOR_STORE_UNAVAILABLE_TOTAL.removesuffix("_total"),
            "Requests whose retrieval found the vector store unavailable (answers held in memory, or 503).",
            registry=r,
        )
        # Shadow traffic; labels are the canary's (the version under test).
        self.shadow_requests = Counter(
            names.SHADOW_REQUESTS_TOTAL.removesuffix("_total"),
            "Shadow requests by outcome (compared|dropped|failed).",
            [*labels, "outcome"],
            registry=r,
        )
        self.shadow_similarity = Histogram(
            names.SHADOW_SIMILARITY,
            "Cosine of the shadow and stable answers' MiniLM embeddings.",
            labels,
            buckets=_SIMILARITY_BUCKETS,
            registry=r,
        )
        self.shadow_intent_agreement = Counter(
            names.SHADOW_INTENT_AGREEMENT_TOTAL.removesuffix("_total"),
            "Whether the canary's served intent equals the stable's.",
            [*labels, "agree"],
            registry=r,
        )
        self.shadow_pii = Counter(
            names.SHADOW_PII_TOTAL.removesuffix("_total"),
            "PII entities the output guard found in shadow answers.",
            labels,
            registry=r,
        )
        self.shadow_length_ratio = Histogram(
            names.SHADOW_LENGTH_RATIO,
            "Shadow answer words per stable answer word.",
            labels,
            buckets=_RATIO_BUCKETS,
            registry=r,
        )


def tenant_label(tenant: str, default: str, known: Collection[str]) -> str:
    """The tenant's own label value when configured (or the default tenant), else ``other``."""
    return tenant if tenant == default or tenant in known else OTHER_TENANT
