"""Prometheus metric names and labels that serving exposes and the operator's analysis reads.

Labels never carry request content: only model, adapter name and version, stage, status class
and entity *types*.
"""

from __future__ import annotations

PREFIX = "finserve"

# Counter: one per finished request. Labels: model, adapter, version, code (HTTP status as text).
REQUESTS_TOTAL = f"{PREFIX}_requests_total"
# Histogram (seconds): end-to-end latency. Labels: model, adapter, version.
REQUEST_DURATION = f"{PREFIX}_request_duration_seconds"
# Histogram (seconds): per-stage latency. Labels: stage.
STAGE_DURATION = f"{PREFIX}_stage_duration_seconds"
# Counter: PII entities found. Labels: model, adapter, version, stage (input|context|output), entity.
PII_FINDINGS_TOTAL = f"{PREFIX}_pii_findings_total"
# Counter: answers whose intent the adapter and retrieval agreed on. Labels: model, adapter, version, agree.
INTENT_AGREEMENT_TOTAL = f"{PREFIX}_intent_agreement_total"
# Counter: generated tokens. Labels: model, adapter, version.
GENERATED_TOKENS_TOTAL = f"{PREFIX}_generated_tokens_total"
# Gauge: requests waiting in or running on a generator replica. Labels: pool.
GENERATOR_QUEUE_DEPTH = f"{PREFIX}_generator_queue_depth"
# Counter: cache lookups. Labels: tier (l1|l2), result (hit|miss|error).
CACHE_LOOKUPS_TOTAL = f"{PREFIX}_cache_lookups_total"

MODEL_LABELS = ("model", "adapter", "version")
