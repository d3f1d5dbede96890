"""Prometheus metric names and labels: what serving exposes and the operator's analysis reads, and
the operator's own rollout gauges that the chart's alerts and dashboard read.

Labels never carry request content: only model (a served route; others collapse into "unknown"),
adapter name and version, stage, status class, entity *types* and the tenant (bounded: configured
tenants only, every other one is "other"); the rollout gauges carry the ModelRollout's namespace, name and model.
"""

from __future__ import annotations

PREFIX = "finserve"

# Counter: one per finished request. Labels: model, adapter, version, code (HTTP status as text).
REQUESTS_TOTAL = f"{PREFIX}_requests_total"
# Histogram (seconds): end-to-end latency. Labels: model, adapter, version.
REQUEST_DURATION = f"{PREFIX}_request_duration_seconds"
# Histogram (seconds): per-stage latency. Labels: stage.
STAGE_DURATION = f"{PREFIX}_stage_duration_seconds"
# Counter: PII entities found. Labels: model, adapter, version, stage (input|context|output), entity, tenant
# (the request's tenant when configured in gateway.metric_tenants or the default one, else "other").
PII_FINDINGS_TOTAL = f"{PREFIX}_pii_findings_total"
# Counter: answers by whether two independent intent opinions agreed: the version's own (its head, blended with
# its fine-tuned encoder if any, before the retrieval vote is mixed in) and the retrieval vote. Versions without a
# head (base) have no own opinion and are not counted. Labels: model, adapter, version, agree.
INTENT_AGREEMENT_TOTAL = f"{PREFIX}_intent_agreement_total"
# Counter: generated tokens. Labels: model, adapter, version.
GENERATED_TOKENS_TOTAL = f"{PREFIX}_generated_tokens_total"
# Counter: prompt tokens sent to the generator. Labels: model, adapter, version, source (computed|cached:
# keys and values reused from the prefix cache instead of computed at prefill).
PROMPT_TOKENS_TOTAL = f"{PREFIX}_prompt_tokens_total"
# Histogram (seconds): time to first token, from the request's arrival at the gateway to the first generated
# token (streamed: the first chunk with text; whole answers: the engine's own first-token time). Labels: MODEL_LABELS.
TIME_TO_FIRST_TOKEN = f"{PREFIX}_time_to_first_token_seconds"
# Histogram (seconds): a request's mean gap between generated tokens after the first. Labels: MODEL_LABELS.
INTER_TOKEN_LATENCY = f"{PREFIX}_inter_token_latency_seconds"
# Gauge: requests waiting in or running on a generator replica. Labels: pool.
GENERATOR_QUEUE_DEPTH = f"{PREFIX}_generator_queue_depth"
# Counter: cache lookups. Labels: tier (l1|l2), result (hit|miss|error).
CACHE_LOOKUPS_TOTAL = f"{PREFIX}_cache_lookups_total"
# Counter: response (answer) cache lookups of greedy requests. Labels: tier (l1|l2), result (hit|miss|error).
RESPONSE_CACHE_LOOKUPS_TOTAL = f"{PREFIX}_response_cache_lookups_total"
# Counter: answers given without the model. Labels: model, adapter, version, kind (fallback|cache; cut: a
# stream ended early, its text so far the model's), cause (the failure's error code: deadline_exceeded,
# backend_unavailable, overloaded, ...; instructions_echoed: the model repeated its system prompt).
DEGRADED_RESPONSES_TOTAL = f"{PREFIX}_degraded_responses_total"
# Gauge: 1 while a circuit breaker of the gateway is open (the stage is refused at once), else 0.
# Labels: breaker (generator: the Generator deployment has no replica that answers).
CIRCUIT_BREAKER_OPEN = f"{PREFIX}_circuit_breaker_open"
# Counter: requests whose retrieval found the vector store unavailable (answered from the answers held in
# memory, or refused 503). No labels: alert on its rate.
VECTOR_STORE_UNAVAILABLE_TOTAL = f"{PREFIX}_vector_store_unavailable_total"
# Counter: retrieved knowledge chunks held back from the prompt by the context guard's policy.
# Labels: MODEL_LABELS, tenant.
CONTEXT_HELD_BACK_TOTAL = f"{PREFIX}_context_chunks_held_back_total"
# Gauge: knowledge documents `finserve ingest` quarantined for PII (read from the quarantine file).
# Labels: policy (skip|mask), entity.
KB_QUARANTINED_DOCUMENTS = f"{PREFIX}_kb_quarantined_documents"
# Counter: questions the out-of-scope gate answered with the configured reply instead of the model.
# Labels: MODEL_LABELS, tenant.
OUT_OF_SCOPE_TOTAL = f"{PREFIX}_out_of_scope_total"

# Shadow traffic (a canary answering mirrored stable requests; never returned). Labels: model, adapter,
# version (the canary's).
# Counter: shadow requests by outcome (compared|dropped|failed). Labels: MODEL_LABELS, outcome.
SHADOW_REQUESTS_TOTAL = f"{PREFIX}_shadow_requests_total"
# Histogram (0-1): cosine of the shadow answer's and the stable answer's MiniLM embeddings.
SHADOW_SIMILARITY = f"{PREFIX}_shadow_answer_similarity"
# Counter: compared pairs by whether the canary's served intent equals the stable's. Labels: MODEL_LABELS, agree.
SHADOW_INTENT_AGREEMENT_TOTAL = f"{PREFIX}_shadow_intent_agreement_total"
# Counter: PII entities the output guard found in shadow answers. Labels: MODEL_LABELS.
SHADOW_PII_TOTAL = f"{PREFIX}_shadow_pii_findings_total"
# Histogram: shadow answer length / stable answer length (words).
SHADOW_LENGTH_RATIO = f"{PREFIX}_shadow_length_ratio"

MODEL_LABELS = ("model", "adapter", "version")
# The model label of a request whose adapter the client chose (x-finserve-adapter, scope adapter:override):
# "override:<route>", so the analysis queries (model="<route>") never count it for or against a canary.
OVERRIDE_MODEL_PREFIX = "override:"

# Exposed by the operator, one series set per ModelRollout (removed when the rollout is deleted).
# Gauge: 1 for the rollout's current phase, 0 for every other phase. Labels: ROLLOUT_LABELS, phase.
ROLLOUT_PHASE = f"{PREFIX}_rollout_phase"
# Gauge: percent of the model's traffic on the canary now. Labels: ROLLOUT_LABELS.
ROLLOUT_CANARY_WEIGHT = f"{PREFIX}_rollout_canary_weight"

# `namespace` is left to Prometheus' target labels (the operator's own pod), hence rollout_namespace.
ROLLOUT_LABELS = ("rollout_namespace", "rollout", "model")

# The generator engine's own view (llama.cpp engine: its server's /metrics and slots). Labels: engine.
# Gauge: parallel slots (sequences decoded together).
ENGINE_SLOTS = f"{PREFIX}_engine_slots"
# Gauge: slots running a request now.
ENGINE_SLOTS_BUSY = f"{PREFIX}_engine_slots_busy"
# Gauge: requests the engine holds until a slot frees.
ENGINE_REQUESTS_DEFERRED = f"{PREFIX}_engine_requests_deferred"
# Counter: prompt tokens computed at prefill (prefix-cache hits excluded).
ENGINE_PROMPT_TOKENS_TOTAL = f"{PREFIX}_engine_prompt_tokens_total"
# Counter: tokens generated.
ENGINE_GENERATED_TOKENS_TOTAL = f"{PREFIX}_engine_generated_tokens_total"
# Counters (seconds): time in prefill and in generation (summed over slots); tokens/s is the ratio of rates.
ENGINE_PROMPT_SECONDS_TOTAL = f"{PREFIX}_engine_prompt_seconds_total"
ENGINE_GENERATE_SECONDS_TOTAL = f"{PREFIX}_engine_generate_seconds_total"
# Counter: engine servers started (llama.cpp starts one more per change of its adapter set).
ENGINE_SERVER_STARTS_TOTAL = f"{PREFIX}_engine_server_starts_total"
