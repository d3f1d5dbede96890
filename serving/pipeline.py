"""The guarded RAG pipeline, free of transport: guard -> route -> retrieve (the intent head alongside)
-> guard -> intent -> generate -> guard -> audit.

The gateway (HTTP) and the evaluation driver both call this class; in the Ray Serve app its stages
are DeploymentHandles, in-process they are the plain objects (see stages.py). Every request,
whatever its outcome, leaves exactly one audit record. A request the router mirrors to the canary
(shadow traffic) hands its guarded prompt to the shadow runner once its own answer is complete; the
shadow leaves its own audit line (route shadow) and is never returned (shadow.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from finserve.contracts import AdapterRef
from finserve.contracts.metrics import OVERRIDE_MODEL_PREFIX

from .admission import Admission
from .audit.status import CachedRefusal
from .config import ServingConfig
from .degrade import Deadline, curated_answer, degradable
from .degrade.gated_generator import GatedGenerator, GatedIntent, GeneratorGate
from .degrade.response_cache import AnswerKey, CachedAnswer, ResponseCache, answer_key, deterministic
from .errors import AuditUnavailable, DeadlineExceeded, InvalidRequest, PIIBlocked, map_error
from .guard.results import GuardResult
from .inference.types import ChatMessage, GenerationRequest, GenerationResult
from .intent import HeadScores, IntentPrediction, decide, own_opinion, wants_head
from .intent.scope import OUT_OF_SCOPE, nearest_similarity, needs_context, out_of_scope
from .metrics import ServingMetrics, tenant_label
from .paths import data_dir
from .prompt import build_messages, intent_first
from .prompt_echo import EchoCheck
from .request_context import CLIENT_CLOSED, RequestContext, audit_record
from .retrieval import IndexMissing, RetrievalResult, SearchFilters, VectorStoreUnavailable
from .retrieval.focus import focus
from .retrieval.pii_policy import held_back, quarantine_counts, quarantine_path, read_quarantine
from .routing import Router
from .schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ChoiceMessage,
    FinserveInfo,
    PromptTokensDetails,
    Usage,
)
from .shadow import ShadowJob, ShadowRunner
from .stages import AuditStage, GeneratorStage, GuardStage, IntentStage, RetrievalStage, StageHealth
from .streaming_guard import StreamReleaser
from .telemetry import TokenClock, note, stage_span
from .telemetry.request import end_stage_span, open_stage_span

log = logging.getLogger(__name__)


@dataclass
class ClassifyOutcome:
    intent: IntentPrediction
    masked_text: str
    pii: dict[str, int]
    retrieval: RetrievalResult


class _Timer:
    def __init__(self, ctx: RequestContext, metrics: ServingMetrics, stage: str) -> None:
        self.ctx, self.metrics, self.stage = ctx, metrics, stage

    def __enter__(self) -> None:
        self.span = stage_span(self.stage, self.ctx)  # each timed stage is also a span of the request's trace
        self.span.__enter__()
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: Any) -> None:
        dt = time.perf_counter() - self.t0
        self.ctx.timings_ms[self.stage] = round(self.ctx.timings_ms.get(self.stage, 0.0) + dt * 1000, 3)
        self.metrics.stage.labels(self.stage).observe(dt)
        self.span.__exit__(*exc)


def neighbour_vote(examples: list) -> str | None:
    """Similarity-weighted majority intent of the nearest training examples (off-topic ones are no intent)."""
    scores: dict[str, float] = {}
    for hit in examples:
        if hit.intent == OUT_OF_SCOPE:
            continue
        scores[hit.intent] = scores.get(hit.intent, 0.0) + max(hit.score, 0.0)
    return max(scores, key=scores.__getitem__) if scores else None


async def _drop(task: asyncio.Future | None) -> None:
    """Cancel a side task whose result is no longer wanted and consume its outcome (nothing left dangling)."""
    if task is None:
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _merge_counts(results: list[GuardResult]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        for entity, n in r.counts().items():
            out[entity] = out.get(entity, 0) + n
    return out


class Pipeline:
    def __init__(
        self,
        config: ServingConfig,
        *,
        guard: GuardStage,
        retrieval: RetrievalStage,
        intent: IntentStage,
        generator: GeneratorStage,
        audit: AuditStage,
        router: Router,
        metrics: ServingMetrics | None = None,
        generator_health: StageHealth | None = None,
    ) -> None:
        self.config = config
        self.guard = guard
        self.retrieval = retrieval
        self.audit = audit
        # Asked before every request: a clear answer is reused for audit.status_ttl_s (a Ray hop, or a statvfs,
        # per request would cost more than the check itself).
        self._audit_refusal = CachedRefusal(audit.refusal, config.audit.status_ttl_s)
        self.router = router
        self.metrics = metrics or ServingMetrics()
        # A remote Generator deployment (its health given) is gated: while no replica is up, generation is
        # refused at once and the intent head skipped, instead of each call queueing for a replacement.
        self.generator_gate: GeneratorGate | None = None
        if generator_health is not None and config.degrade.generator_breaker.enabled:
            self.metrics.breaker_open.labels("generator").set(0)
            self.generator_gate = GeneratorGate(
                generator_health,
                config.degrade.generator_breaker,
                lambda is_open: self.metrics.breaker_open.labels("generator").set(int(is_open)),
            )
            generator = GatedGenerator(generator, self.generator_gate)
            intent = GatedIntent(intent, self.generator_gate)
        self.intent = intent
        self.generator = generator
        self.admission = Admission(config.admission, self.metrics.registry)  # rate limits, generator queue
        self._echo = EchoCheck(config.gateway.system_prompt)
        self._in_flight = 0  # live generations only: shadows are bounded by the runner, not counted here
        self.shadows = ShadowRunner(
            config.shadow,
            config.intent,
            guard=guard,
            retrieval=retrieval,
            intent=intent,
            generator=generator,
            audit=audit,
            metrics=self.metrics,
        )
        self._pending_audits: set[asyncio.Future] = set()  # audits outliving a cancelled request
        # The chart sets FINSERVE_POOL to the workload name: the operator's queue query selects on it.
        self._pool = os.environ.get("FINSERVE_POOL", "default")
        rc = config.degrade.response_cache
        self.answers = (
            ResponseCache(
                rc,
                config.retrieval.redis_url,
                count=self._count_answer_lookup,
                l2_timeout_s=config.retrieval.l2_timeout_s,
                l2_retry_s=config.retrieval.l2_retry_s,
            )
            if rc.enabled
            else None
        )

    def _count_answer_lookup(self, tier: str, result: str) -> None:
        self.metrics.answer_cache.labels(tier, result).inc()

    async def warm(self) -> int:
        """Guard every knowledge chunk once, so the first request to retrieve one does not pay its scan.

        The context pass still runs on every request; its cache (keyed by the chunk's hash, in this
        process, with this process's guard policy) just starts full. Returns the chunks scanned; a
        failure only leaves the cache cold.
        """
        self.count_quarantine()
        try:
            texts = await self.retrieval.knowledge_texts()
            if texts:
                await self.guard.scan_chunks(texts)
            return len(texts)
        except Exception:  # noqa: BLE001 - warming is an optimisation: requests scan what they need
            log.warning("context guard cache not warmed", exc_info=True)
            return 0

    def count_quarantine(self) -> None:
        """Exposes what the last ingest quarantined (its list lies next to the index) as a gauge."""
        r = self.config.retrieval
        try:
            records = read_quarantine(quarantine_path(r.quarantine, r.resolved_milvus_uri(), data_dir()))
        except (OSError, ValueError):
            log.warning(
                "quarantine list unreadable: the quarantined-documents gauge is not set", exc_info=True
            )
            return
        for (policy, entity), n in quarantine_counts(records).items():
            self.metrics.kb_quarantined.labels(policy, entity).set(n)

    # ---- the shared front half: guard the input, route, retrieve, guard the context, intent ----

    async def _prepare(
        self, req: ChatCompletionRequest, ctx: RequestContext
    ) -> tuple[list[ChatMessage], RetrievalResult]:
        if len(req.messages) > self.config.gateway.max_messages:
            raise InvalidRequest(
                f"at most {self.config.gateway.max_messages} messages per request", param="messages"
            )
        if not any(m.role == "user" for m in req.messages):
            raise InvalidRequest("messages must contain at least one user message", param="messages")
        ctx.choice = self.router.pick(
            req.model, ctx.sticky_key or req.user, ctx.adapter_override, ctx.override_any_version
        )
        ctx.model = req.model  # only a served route's name is ever recorded (metrics labels, audit)

        with _Timer(ctx, self.metrics, "guard_input"):
            scanned = await self.guard.scan_many([m.text for m in req.messages])
        ctx.pii["input"] = _merge_counts(scanned)
        masked = [
            ChatMessage(role=m.prompt_role, content=r.text)
            for m, r in zip(req.messages, scanned, strict=True)
        ]
        query = next(m.content for m in reversed(masked) if m.role == "user")
        ctx.masked_input = query
        blocked = sorted({t for r in scanned for t in r.blocked})
        if blocked:
            raise PIIBlocked(blocked)
        # An early exit before retrieval and generation: while the audit volume is full or read-only the answer
        # could not be recorded, so it is not made. The refusal itself is audited like any outcome, if it can be.
        refusal = await self._audit_refusal.get()
        if refusal is not None:
            log.warning("request %s refused before generating: %s", ctx.request_id, refusal)
            raise AuditUnavailable()

        filters = self._filters(ctx.tenant)
        try:
            found, head = await self._search(query, ctx.choice.adapter, filters, ctx)
            try:
                found = await self._follow_up(found, masked, filters, ctx)
            except BaseException:
                await _drop(head)
                raise
        except Exception as exc:
            if _store_down(exc):
                self.metrics.vector_store_unavailable.inc()
                self.metrics.breaker_open.labels("vector_store").set(1)
            raise
        self._observe_retrieval(found)
        turned_away = out_of_scope(found.examples, self.config.intent.scope)
        if turned_away:
            # The reply is decided: the head's opinion would change nothing the customer reads, and an off-topic
            # question says nothing about the version's intents (the agreement metric skips it), so its hop is
            # dropped rather than awaited (the reply goes out without the Generator replica's turn).
            await _drop(head)
            head = None
        try:
            # The guard runs in this process and blocks the loop: the head's hop is already in flight.
            with _Timer(ctx, self.metrics, "guard_context"):
                context = await self.guard.scan_chunks([h.text for h in found.hits]) if found.hits else []
            # "intent" is what the head adds to the critical path (its wait after retrieval and the mix),
            # timed once: timing the overlapped hop too would count the same milliseconds twice.
            with _Timer(ctx, self.metrics, "intent"):
                scores = await head if head else None
                ctx.intent = decide(scores, found.examples, self.config.intent.vote_temperature)
            ctx.own_intent = own_opinion(scores)
        except BaseException:
            await _drop(head)
            raise
        ctx.vote = neighbour_vote(found.examples)
        ctx.pii["context"] = _merge_counts(context)
        if turned_away:
            self._turn_away(ctx, nearest_similarity(found.examples) or 0.0)
        label = ctx.intent.label if ctx.intent else None
        if not turned_away:
            found, context = await self._with_intent_answer(found, context, query, filters, label, ctx)
        knowledge, ctx.held_back = self._knowledge(found, context, label)
        ctx.knowledge = knowledge
        ctx.curated = self._curated(found, context, label)
        messages = build_messages(self.config.gateway.system_prompt, knowledge, masked)
        return messages, found

    def _turn_away(self, ctx: RequestContext, similarity: float) -> None:
        """Marks a question the knowledge does not cover: it gets the configured reply, not the model's."""
        ctx.out_of_scope = True
        # Kept as the intent so clients, the audit line and answer evaluation see the same label; the
        # confidence says how far the nearest indexed question was.
        ctx.intent = IntentPrediction(
            label=OUT_OF_SCOPE, confidence=min(1.0, max(0.0, 1.0 - similarity)), method="scope"
        )

    def _scope_answer(self, ctx: RequestContext) -> CachedAnswer | None:
        """The reply to an out-of-scope question, given instead of generating (never cached nor mirrored)."""
        if not ctx.out_of_scope:
            return None
        return CachedAnswer(text=self.config.intent.scope.answer, finish_reason="stop")

    def _knowledge(
        self,
        found: RetrievalResult,
        context: list[GuardResult],
        intent: str | None,
    ) -> tuple[list[str], list[str]]:
        """The prompt's knowledge and the ids held back: a chunk the hold-back policy calls risky is left out
        altogether (the answer uses the rest), and the classified intent's entry leads (see intent_first)."""
        out = held_back(
            [[(f.type, f.score) for f in r.findings] for r in context], self.config.retrieval.hold_back
        )
        dropped = [h.id for h, drop in zip(found.hits, out, strict=True) if drop]
        kept = [(r.text, h.intent) for r, h, drop in zip(context, found.hits, out, strict=True) if not drop]
        return intent_first([t for t, _ in kept], [i for _, i in kept], intent), dropped

    @staticmethod
    def _curated(found: RetrievalResult, context: list[GuardResult], intent: str | None) -> str | None:
        """The guarded curated answer of the classified intent among the retrieved ones: the fallback."""
        pairs = [(r.text, h.intent) for r, h in zip(context, found.hits, strict=True) if not r.blocked]
        return curated_answer(pairs, intent)

    def _observe_retrieval(self, found: RetrievalResult) -> None:
        """Count what the retriever reports and show its breakers as this gateway last saw them: its own
        counters and breakers live in its process (a Ray replica or the default registry), which this
        gateway's /metrics does not expose. A tier the search did not reach leaves its gauge as it was."""
        for tier, result in found.lookups.items():
            self.metrics.cache.labels(tier, result).inc()
        if "l2" in found.lookups:  # "error": Redis failed or was skipped while its breaker is open
            self.metrics.breaker_open.labels("redis_l2").set(int(found.lookups["l2"] == "error"))
        if found.cache == "answers":  # Milvus was down: only the answers held in memory were searched
            self.metrics.vector_store_unavailable.inc()
            self.metrics.breaker_open.labels("vector_store").set(1)
        elif found.cache in ("miss", "off"):  # Milvus itself answered
            self.metrics.breaker_open.labels("vector_store").set(0)

    async def _search(
        self,
        query: str,
        adapter: AdapterRef,
        filters: SearchFilters,
        ctx: RequestContext | None,
    ) -> tuple[RetrievalResult, asyncio.Future[HeadScores | None] | None]:
        """Retrieval, with the intent head (when the adapter has one) already running beside it.

        The head needs only the masked query, so its hop overlaps retrieval instead of following it;
        the caller awaits the returned future once the nearest examples are there to mix in.
        """
        head = None
        query = self._searched(query)
        if wants_head(self.config.intent, adapter):
            head = asyncio.ensure_future(self.intent.head_scores(query, adapter))
        try:
            found = await self._retrieve(query, filters, ctx)
        except BaseException:
            await _drop(head)
            raise
        return found, head

    def _searched(self, message: str) -> str:
        """What of a customer's message is searched: without greeting or sign-off unless retrieval.focus_query is off."""
        return focus(message) if self.config.retrieval.focus_query else message

    async def _with_intent_answer(
        self,
        found: RetrievalResult,
        context: list[GuardResult],
        query: str,
        filters: SearchFilters,
        intent: str | None,
        ctx: RequestContext | None,
    ) -> tuple[RetrievalResult, list[GuardResult]]:
        """``found`` and its guarded ``context`` with the answer of the classified ``intent`` in the last place
        when retrieval's top answers missed it (intent_first then moves it to the front).

        The intent is decided from the head and the nearest examples together, and it is right more often than
        retrieval's answer ranking; without its answer in the prompt the model answers from another intent's
        entry although the intent was read right (1-2 % of questions, more where a detail in the message, an
        address or an account number, pulls the search elsewhere). The prompt keeps its number of entries.
        """
        if (
            intent is None
            or intent == OUT_OF_SCOPE
            or not found.hits
            or any(h.intent == intent for h in found.hits)
        ):
            return found, context
        try:
            only = SearchFilters(tenant=filters.tenant, intent=intent)
        except ValueError:  # a label the filter grammar refuses: no answer can be looked up by it
            return found, context
        try:
            own = await self._retrieve(self._searched(query), only, ctx, noted=False)
        except Exception:  # best effort: the answers retrieval brought still make a prompt
            log.warning(
                "looking up the answer of intent %s failed; the prompt keeps retrieval's",
                intent,
                exc_info=True,
            )
            return found, context
        extra = [h for h in own.hits if h.intent == intent][:1]
        if not extra:  # no answer of this intent for this tenant
            return found, context
        scanned = await self.guard.scan_chunks([h.text for h in extra])
        keep = len(found.hits) - 1
        return (
            found.model_copy(update={"hits": [*found.hits[:keep], *extra]}),
            [*context[:keep], *scanned],
        )

    async def _retrieve(
        self, query: str, filters: SearchFilters, ctx: RequestContext | None, noted: bool = True
    ) -> RetrievalResult:
        """One retrieval search, timed as the request's retrieval stage and bounded by its deadline; ``noted``:
        its cache tier and hits are the request's (the main search's, not a follow-up lookup's)."""
        with _Timer(ctx, self.metrics, "retrieval") if ctx else contextlib.nullcontext():
            if ctx is not None and ctx.deadline is not None:
                try:
                    async with asyncio.timeout(
                        ctx.deadline.stage_s(self.config.degrade.retrieval_timeout_ms)
                    ):
                        found = await self.retrieval.search(query, filters)
                except TimeoutError:
                    raise DeadlineExceeded("retrieval") from None
            else:
                found = await self.retrieval.search(query, filters)
            if noted:
                note(cache=found.cache, hits=len(found.hits))
        return found

    async def _follow_up(
        self, found: RetrievalResult, masked: list[ChatMessage], filters: SearchFilters, ctx: RequestContext
    ) -> RetrievalResult:
        """A follow-up ("is that free?", "what do I do next?") is far from every indexed question on its own. Before
        the scope gate turns it away it is searched again together with the customer's previous message, and that
        result stands when it is in scope. One nearest to a listed off-topic question is not rescued by context."""
        scope = self.config.intent.scope
        users = [m.content for m in masked if m.role == "user"]
        if len(users) < 2 or not needs_context(found.examples, scope):
            return found
        again = await self._retrieve(
            f"{self._searched(users[-2])}\n{self._searched(users[-1])}", filters, ctx
        )
        return found if out_of_scope(again.examples, scope) else again

    @staticmethod
    def _filters(tenant: str) -> SearchFilters:
        try:
            return SearchFilters(tenant=tenant)
        except ValueError as exc:
            raise InvalidRequest(
                "tenant must be 1-128 letters, digits or _.:?-", param="x-finserve-tenant"
            ) from exc

    def _generation_request(
        self, req: ChatCompletionRequest, ctx: RequestContext, messages: list[ChatMessage]
    ) -> GenerationRequest:
        gw = self.config.gateway
        max_tokens = req.max_completion_tokens or req.max_tokens or gw.max_tokens_default
        if max_tokens > gw.max_tokens_limit:
            raise InvalidRequest(f"max_tokens must be at most {gw.max_tokens_limit}", param="max_tokens")
        stop = [req.stop] if isinstance(req.stop, str) else req.stop
        assert ctx.choice is not None  # set by _prepare
        return GenerationRequest(
            messages=messages,
            adapter=ctx.choice.adapter,
            max_tokens=max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            stop=stop,
            seed=req.seed,
        )

    def _info(self, ctx: RequestContext, found: RetrievalResult) -> FinserveInfo:
        assert ctx.choice is not None
        return FinserveInfo(
            request_id=ctx.request_id,
            intent=ctx.intent.label if ctx.intent else None,
            intent_confidence=round(ctx.intent.confidence, 4) if ctx.intent else None,
            adapter=str(ctx.choice.adapter),
            route=ctx.choice.role,
            citations=[] if ctx.out_of_scope else [h.id for h in found.hits if h.id not in ctx.held_back],
            held_back=ctx.held_back,
            pii=ctx.pii,
            cache=found.cache,
            timings_ms=ctx.timings_ms,
            degraded=ctx.degraded,
            provider=ctx.provider,
        )

    # ---- non-streaming ----

    async def chat(self, req: ChatCompletionRequest, ctx: RequestContext) -> ChatCompletion:
        status, error, shadow = 200, None, None
        try:
            self._start_deadline(ctx)
            messages, found = await self._prepare(req, ctx)
            self._note_retrieval(ctx, found)
            gen_req = self._generation_request(req, ctx, messages)
            key = self._answer_key(req, ctx, gen_req)
            # Neither is a degraded answer: the reply to an out-of-scope question, or a normal hit (use=always).
            degraded = self._scope_answer(ctx) or await self._cached_first(ctx, key)
            clock = TokenClock(ctx.started)
            if degraded is None:
                try:
                    with _Timer(ctx, self.metrics, "generate"):
                        called = time.perf_counter()
                        async with asyncio.timeout(self._generate_budget_s(ctx)):
                            result = await self._generate(gen_req)
                        clock.engine_timing(called, result.first_token_s, result.last_token_s)
                        note(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens)
                    ctx.provider = result.provider
                except Exception as exc:  # noqa: BLE001 - degradable failures get the fallback, others re-raise
                    degraded = await self._degrade(ctx, key, exc)
                else:
                    if self._echo.found(result.text):
                        degraded = self._instead_of_echo(ctx)
            if degraded is not None:
                result = GenerationResult(
                    text=degraded.text,
                    prompt_tokens=degraded.prompt_tokens,
                    completion_tokens=degraded.completion_tokens,
                    finish_reason="length" if degraded.finish_reason == "length" else "stop",
                    adapter=gen_req.adapter,
                )
            with _Timer(ctx, self.metrics, "guard_output"):
                [out] = await self.guard.scan_many([result.text])
            ctx.pii["output"] = out.counts()
            ctx.masked_output = out.text
            if degraded is None:
                self._count_tokens(
                    ctx, result.completion_tokens, result.prompt_tokens, result.cached_prompt_tokens, clock
                )
                await self._remember(key, out.text, result)
                shadow = self._shadow_job(ctx, gen_req, found)
            ctx.timings_ms["total"] = round(ctx.elapsed_ms(), 3)
            return ChatCompletion(
                id=f"chatcmpl-{ctx.request_id}",
                model=req.model,
                choices=[Choice(message=ChoiceMessage(content=out.text), finish_reason=result.finish_reason)],
                usage=_usage(result.prompt_tokens, result.completion_tokens, result.cached_prompt_tokens),
                finserve=self._info(ctx, found),
            )
        except asyncio.CancelledError:
            status, error = CLIENT_CLOSED, "cancelled"
            raise
        except BaseException as exc:
            mapped = map_error(exc)
            status, error = mapped.status, mapped.code
            raise
        finally:
            await self._finish_shielded(ctx, status, error)
            self._mirror(shadow, status)

    # ---- graceful degradation (serving/degrade/): deadlines, the response cache, the fallback ----

    def _start_deadline(self, ctx: RequestContext) -> None:
        if ctx.deadline is None:
            ctx.deadline = Deadline.for_request(self.config.degrade, ctx.deadline_ms, ctx.started)

    def _generate_budget_s(self, ctx: RequestContext) -> float:
        d = self.config.degrade
        assert ctx.deadline is not None
        # Kept back only when a degraded answer could use it: otherwise generation may take all that is left.
        reserve = d.fallback_reserve_ms if d.policy_for(ctx.model) == "fallback" else 0
        return ctx.deadline.stage_s(d.generate_timeout_ms, reserve)

    def _answer_key(
        self, req: ChatCompletionRequest, ctx: RequestContext, gen_req: GenerationRequest
    ) -> str | None:
        """The response cache key of a greedy request (None: not cacheable). Masked text only."""
        if self.answers is None or not deterministic(gen_req.temperature) or ctx.index_version is None:
            return None
        masked = [(m.role, m.content) for m in gen_req.messages if m.role != "system"]
        return answer_key(
            AnswerKey(
                tenant=ctx.tenant,
                messages=masked,
                adapter=str(gen_req.adapter),
                index_version=ctx.index_version,
                max_tokens=gen_req.max_tokens or 0,
                stop=gen_req.stop,
                system_prompt=self.config.gateway.system_prompt,
            )
        )

    async def _cached_first(self, ctx: RequestContext, key: str | None) -> CachedAnswer | None:
        """With response_cache.use=always: a cached answer instead of generating (not degraded)."""
        if key is None or self.answers is None or self.config.degrade.response_cache.use != "always":
            return None
        hit = await self.answers.get(key)
        return hit[1] if hit else None

    async def _remember(self, key: str | None, masked_text: str, result: GenerationResult) -> None:
        if key is None or self.answers is None:
            return
        try:
            await self.answers.put(
                key,
                CachedAnswer(
                    text=masked_text,
                    finish_reason=result.finish_reason,
                    prompt_tokens=result.prompt_tokens,
                    completion_tokens=result.completion_tokens,
                ),
            )
        except Exception:  # noqa: BLE001 - the answer is complete; a cache write must not touch it
            log.warning("answer of %s not cached", ctx_id(key), exc_info=True)

    async def _degrade(self, ctx: RequestContext, key: str | None, exc: BaseException) -> CachedAnswer:
        """The answer to give when generation failed: the cached answer of the same question, else the
        curated answer of the classified intent; re-raises when the policy says error or neither exists."""
        if isinstance(exc, TimeoutError) and not isinstance(exc, DeadlineExceeded):
            exc = DeadlineExceeded("generate")
        if not degradable(exc) or self.config.degrade.policy_for(ctx.model) != "fallback":
            raise exc
        cause = map_error(exc).code
        answer, kind = None, None
        if key is not None and self.answers is not None:
            hit = await self.answers.get(key)
            answer, kind = (hit[1], "cache") if hit else (None, None)
        if answer is None and ctx.curated is not None:
            answer, kind = CachedAnswer(text=ctx.curated, finish_reason="stop"), "fallback"
        if answer is None or kind is None:
            raise exc
        log.warning("request %s answered degraded (%s) after %s", ctx.request_id, kind, cause)
        ctx.degraded, ctx.degraded_cause = kind, cause
        self.metrics.degraded.labels(*self._labels(ctx), kind, cause).inc()
        return answer

    def _instead_of_echo(self, ctx: RequestContext) -> CachedAnswer:
        """The answer to give when the model repeated its instructions (prompt_echo.py): the curated answer of the
        classified intent, else the out-of-scope reply (which passes the question on); marked degraded."""
        log.warning("request %s: the answer repeated the instructions; answered without it", ctx.request_id)
        ctx.degraded, ctx.degraded_cause = "fallback", "instructions_echoed"
        self.metrics.degraded.labels(*self._labels(ctx), "fallback", "instructions_echoed").inc()
        return CachedAnswer(text=ctx.curated or self.config.intent.scope.answer, finish_reason="stop")

    async def _generate(self, gen_req: GenerationRequest):  # noqa: ANN202 - GenerationResult
        async with self.admission.queue.slot():  # bounded wait: past it, Overloaded (503)
            return await self._generate_admitted(gen_req)

    async def _generate_admitted(self, gen_req: GenerationRequest):  # noqa: ANN202 - GenerationResult
        self._in_flight += 1
        self.metrics.queue.labels(self._pool).set(self._in_flight)
        try:
            return await self.generator.generate(gen_req)
        finally:
            self._in_flight -= 1
            self.metrics.queue.labels(self._pool).set(self._in_flight)

    # ---- streaming: OpenAI chat.completion.chunk dicts; the gateway frames them as SSE ----

    async def chat_stream(self, req: ChatCompletionRequest, ctx: RequestContext) -> AsyncIterator[dict]:
        """Prepares eagerly (so errors become a normal error response), then yields chunks."""
        try:
            self._start_deadline(ctx)
            messages, found = await self._prepare(req, ctx)
            self._note_retrieval(ctx, found)
            gen_req = self._generation_request(req, ctx, messages)
        except BaseException as exc:
            mapped = map_error(exc)
            await self.finish(ctx, mapped.status, mapped.code)
            raise
        chunks = self._stream_chunks(req, ctx, gen_req, found)
        # Started now (its first chunk taken), so closing or dropping it runs its audit even if the
        # client leaves before the response begins: a generator never started would run no code at all.
        first = await chunks.__anext__()
        return _Stream(first, chunks)

    @staticmethod
    def _note_retrieval(ctx: RequestContext, found: RetrievalResult) -> None:
        # What the answer was built on: nothing retrieved when the question was out of scope.
        ctx.citations = [] if ctx.out_of_scope else [h.id for h in found.hits if h.id not in ctx.held_back]
        ctx.index_version = getattr(found, "index_version", None)

    async def _stream_chunks(
        self,
        req: ChatCompletionRequest,
        ctx: RequestContext,
        gen_req: GenerationRequest,
        found: RetrievalResult,
    ) -> AsyncIterator[dict]:
        """The answer's chunks. Write-ahead: the audit line is appended before the final chunk, so a
        client never holds a finished answer without its line; if the append fails, the stream ends
        in an error (AuditUnavailable) instead. A client that goes away (the generator is closed or
        its task cancelled) still leaves one line, status 499, with the text released so far. A
        mirrored request's shadow starts once the client has the final chunk."""
        audited = False
        shadow: ShadowJob | None = None
        chunk_id = f"chatcmpl-{ctx.request_id}"
        created = int(time.time())
        releaser = StreamReleaser(self.guard.scan_many)
        released: list[str] = []
        finish_reason, tokens, prompt, cached = "stop", 0, 0, 0
        echoed = False  # the model began repeating its instructions: generation stopped there
        # Streamed, the output guard runs beside generation (each release is judged as text arrives).
        guard_span = open_stage_span("guard_output", ctx)
        ticket = self.admission.queue.ticket()

        def chunk(delta: dict, finish: str | None = None, **extra: object) -> dict:
            return {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": req.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }

        announced = False

        def content(text: str) -> dict:
            # The first chunk with text also says what is settled by then and the headers could not:
            # degraded (decided before any text) and provider (failover ends at the first piece).
            nonlocal announced
            known = (
                {}
                if announced
                else {k: v for k, v in (("degraded", ctx.degraded), ("provider", ctx.provider)) if v}
            )
            announced = True
            return chunk({"content": text}, **({"finserve": known} if known else {}))

        async def audit(status: int, error: str | None) -> None:
            nonlocal audited
            audited = True
            ctx.masked_output = "".join(released)
            await self._finish_shielded(ctx, status, error)

        key = self._answer_key(req, ctx, gen_req)
        try:
            await ticket.wait()  # before the first chunk: a shed stream is a plain 503
            yield chunk({"role": "assistant", "content": ""})
            degraded = self._scope_answer(ctx) or await self._cached_first(ctx, key)
            if degraded is None:
                self._in_flight += 1
                self.metrics.queue.labels(self._pool).set(self._in_flight)
                t0 = time.perf_counter()
                clock, span = TokenClock(ctx.started), open_stage_span("generate", ctx)
                pieces = aiter(self.generator.stream(gen_req))
                try:
                    while True:
                        try:
                            # Each wait is bounded by what the deadline leaves (and generate_timeout_ms).
                            async with asyncio.timeout(self._generate_budget_s(ctx)):
                                piece = await anext(pieces)
                        except StopAsyncIteration:
                            break
                        ctx.provider = piece.provider or ctx.provider
                        if piece.delta:
                            clock.tick()
                        tokens = piece.usage.completion_tokens if piece.usage else tokens + 1
                        if piece.usage:
                            prompt, cached = piece.usage.prompt_tokens, piece.usage.cached_tokens
                        if piece.finish_reason:
                            finish_reason = piece.finish_reason
                        # Checked on the raw text, which runs at least the releaser's holdback ahead of what
                        # is sent: the repeated instructions are never released.
                        if piece.delta and self._echo.found_at_end(
                            releaser.raw + piece.delta, len(piece.delta)
                        ):
                            echoed = True
                            break
                        text = await releaser.feed(piece.delta) if piece.delta else ""
                        if text:
                            released.append(text)
                            yield content(text)
                except Exception as exc:  # noqa: BLE001 - before any text was sent the fallback may answer
                    if released:  # text is out: an error event, as for any failure mid-answer
                        if isinstance(exc, TimeoutError):
                            raise DeadlineExceeded("generate") from exc
                        raise
                    degraded = await self._degrade(ctx, key, exc)
                finally:
                    ticket.release()  # the generator's queue slot, as soon as generation ends
                    with contextlib.suppress(Exception):
                        await pieces.aclose()  # type: ignore[attr-defined]
                    self._in_flight -= 1
                    self.metrics.queue.labels(self._pool).set(self._in_flight)
                    ctx.timings_ms["generate"] = round((time.perf_counter() - t0) * 1000, 3)
                    end_stage_span(span, prompt_tokens=prompt, completion_tokens=tokens)
                if echoed and not released:  # nothing sent yet: the customer gets a real answer instead
                    degraded = self._instead_of_echo(ctx)
                elif echoed:  # part of a real answer is out: it ends there, counted as cut short
                    log.warning(
                        "request %s: the answer began repeating the instructions; cut there", ctx.request_id
                    )
                    self.metrics.degraded.labels(*self._labels(ctx), "cut", "instructions_echoed").inc()
            if degraded is not None:
                [out] = await self.guard.scan_many([degraded.text])
                released.append(out.text)
                ctx.pii["output"] = out.counts()
                yield content(out.text)
                finish_reason = "stop"
            else:
                # After an echo mid-answer the held-back text (where the echo began) is dropped.
                tail = "" if echoed else await releaser.finish()
                if tail:
                    released.append(tail)
                    yield content(tail)
                ctx.pii["output"] = releaser.findings
                self._count_tokens(ctx, tokens, prompt, cached, clock)
            ctx.timings_ms["total"] = round(ctx.elapsed_ms(), 3)
            final = chunk({}, finish_reason, finserve=self._info(ctx, found).model_dump())
            await audit(200, None)  # write-ahead: durable before the client sees the end
            yield final
            if req.stream_options is not None and req.stream_options.include_usage:
                # OpenAI's usage chunk: after the last choice, with no choices of its own.
                yield {
                    "id": chunk_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": req.model,
                    "choices": [],
                    "usage": _usage(prompt, tokens, cached).model_dump(),
                }
            if degraded is None and not echoed:  # an answer cut short at an echo is neither kept nor mirrored
                await self._remember(
                    key,
                    "".join(released),
                    GenerationResult(
                        text="",
                        prompt_tokens=prompt,
                        completion_tokens=tokens,
                        cached_prompt_tokens=cached,
                        finish_reason=finish_reason,
                        adapter=gen_req.adapter,
                    ),
                )
                shadow = self._shadow_job(ctx, gen_req, found)  # the client has its last chunk
        except Exception as exc:
            if not audited:
                mapped = map_error(exc)
                await audit(mapped.status, mapped.code)  # AuditUnavailable replaces exc if this fails
            raise
        finally:
            end_stage_span(guard_span)
            ticket.release()  # a client that left before generation began
            if not audited:  # GeneratorExit or CancelledError: the client went away mid-answer
                with contextlib.suppress(AuditUnavailable):  # logged by finish(); nobody is left to tell
                    await audit(CLIENT_CLOSED, "client_closed_request")
            self._mirror(shadow, 200)

    # ---- shadow traffic: after the live answer is complete, never in its way ----

    def _shadow_job(
        self, ctx: RequestContext, gen_req: GenerationRequest, found: RetrievalResult
    ) -> ShadowJob | None:
        """The mirrored twin of a finished live request, or None when the router did not mirror it."""
        if ctx.choice is None or ctx.choice.shadow is None or ctx.masked_output is None:
            return None
        return ShadowJob(
            live_request_id=ctx.request_id,
            tenant=ctx.tenant,
            model=ctx.model or ctx.choice.model,
            canary=ctx.choice.shadow,
            masked_input=ctx.masked_input,
            stable_answer=ctx.masked_output,
            stable_intent=ctx.intent.label if ctx.intent else None,
            request=gen_req.model_copy(update={"adapter": ctx.choice.shadow}),
            examples=tuple(found.examples),
        )

    def _mirror(self, job: ShadowJob | None, status: int) -> None:
        if job is None or status != 200:
            return
        try:
            self.shadows.submit(job, self._in_flight)
        except Exception:  # noqa: BLE001 - the live answer is already complete; a shadow must not touch it
            log.exception("shadow of %s not started", job.live_request_id)

    async def aclose(self) -> None:
        """Cancel the shadows still running (the live requests are the caller's to drain)."""
        await self.shadows.aclose()
        if self.generator_gate is not None:
            await self.generator_gate.aclose()

    # ---- evaluation entry: the same front half, no generation ----

    async def classify(
        self, text: str, adapter: AdapterRef | None = None, tenant: str = "default"
    ) -> ClassifyOutcome:
        """Guard -> retrieval -> intent, exactly as a chat request runs them (used by `finserve eval`)."""
        [scanned] = await self.guard.scan_many([text])
        ref = adapter or self.router.route(next(iter(self.router.models()))).stable
        found, head = await self._search(scanned.text, ref, self._filters(tenant), None)
        intent = decide(await head if head else None, found.examples, self.config.intent.vote_temperature)
        return ClassifyOutcome(intent=intent, masked_text=scanned.text, pii=scanned.counts(), retrieval=found)

    # ---- training entry: the prompt serving would build, for a known intent ----

    async def prompt_for(self, text: str, intent: str, tenant: str = "default") -> list[ChatMessage]:
        """The messages a chat request with one user turn ``text`` sends to the generator, with the knowledge
        of ``intent`` first, as serving puts the classified intent's (used to tune adapters on answers:
        the same guard, retrieval, context guard and prompt builder as :meth:`chat`)."""
        [scanned] = await self.guard.scan_many([text])
        filters = self._filters(tenant)
        found = await self.retrieval.search(scanned.text, filters)
        context = await self.guard.scan_chunks([h.text for h in found.hits]) if found.hits else []
        found, context = await self._with_intent_answer(found, context, scanned.text, filters, intent, None)
        knowledge, _ = self._knowledge(found, context, intent)
        return build_messages(
            self.config.gateway.system_prompt, knowledge, [ChatMessage(role="user", content=scanned.text)]
        )

    # ---- bookkeeping shared by every outcome ----

    def _labels(self, ctx: RequestContext, status: int = 200) -> tuple[str, str, str]:
        adapter = ctx.choice.adapter if ctx.choice else None
        model = ctx.model or "unknown"
        if adapter is not None and ctx.choice is not None and ctx.choice.role == "override":
            # Overridden traffic is labelled apart, so canary analysis (which selects model="<route>") never
            # counts it; a failed one may name any adapter: only versions that served a request get a label.
            model = OVERRIDE_MODEL_PREFIX + model
            if status >= 400:
                return (model, "unknown", "unknown")
        return (model, adapter.name if adapter else "none", adapter.version if adapter else "none")

    def _count_tokens(
        self, ctx: RequestContext, generated: int, prompt: int, cached: int, clock: TokenClock | None = None
    ) -> None:
        labels = self._labels(ctx)
        if clock is not None:
            clock.observe(self.metrics, labels, generated)
        self.metrics.tokens.labels(*labels).inc(generated)
        self.metrics.prompt_tokens.labels(*labels, "computed").inc(prompt - cached)
        self.metrics.prompt_tokens.labels(*labels, "cached").inc(cached)

    async def _finish_shielded(self, ctx: RequestContext, status: int, error: str | None) -> None:
        """finish(), carried through even if the caller is cancelled meanwhile (a client that left):
        the line is still written, and the cancellation goes on once it is."""
        task = asyncio.ensure_future(self.finish(ctx, status, error))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            self._pending_audits.add(task)
            task.add_done_callback(self._pending_audits.discard)
            raise

    async def finish(self, ctx: RequestContext, status: int, error: str | None) -> None:
        """Metrics and the audit record for one request, whatever happened to it.

        Raises AuditUnavailable (503) when the line cannot be written: no answer goes out without one.
        """
        labels = self._labels(ctx, status)
        tenant = tenant_label(
            ctx.tenant, self.config.gateway.default_tenant, self.config.gateway.metric_tenants
        )
        elapsed = ctx.elapsed_ms()
        self.metrics.requests.labels(*labels, str(status)).inc()
        self.metrics.latency.labels(*labels).observe(elapsed / 1000)
        for stage, counts in ctx.pii.items():
            for entity, n in counts.items():
                if n:
                    self.metrics.pii.labels(*labels, stage, entity, tenant).inc(n)
        if ctx.held_back:
            self.metrics.context_held_back.labels(*labels, tenant).inc(len(ctx.held_back))
        if ctx.out_of_scope:
            self.metrics.out_of_scope.labels(*labels, tenant).inc()
        # Two independent opinions: the version's own (head, no vote mixed in) and the retrieval vote. The served
        # intent already contains the vote, so comparing it with the vote would grade the version partly
        # against itself; a version without a head has no opinion of its own and is not counted.
        if ctx.own_intent is not None and ctx.vote is not None and status == 200:
            agree = "true" if ctx.own_intent == ctx.vote else "false"
            self.metrics.intent_agreement.labels(*labels, agree).inc()
        try:
            record = audit_record(ctx, status, error, elapsed)
            with _Timer(ctx, self.metrics, "audit"):
                await self.audit.append(record)
        except Exception as exc:
            log.error("audit append failed for request %s: %s", ctx.request_id, exc.__class__.__name__)
            raise AuditUnavailable() from exc


class _Stream:
    """A stream's chunks with the first one already taken. Closing it closes the started generator,
    so the audit line of an abandoned answer is written even if nobody iterated at all."""

    def __init__(self, first: dict, rest: AsyncGenerator[dict, None]) -> None:
        self._first: dict | None = first
        self._rest = rest

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> dict:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await self._rest.__anext__()

    async def aclose(self) -> None:
        await self._rest.aclose()


def _store_down(exc: BaseException) -> bool:
    """Retrieval failed because the vector store is down (not because the index is missing); errors from the
    Retriever deployment arrive wrapped by Ray, with ours as ``cause``."""
    cause = getattr(exc, "cause", None)
    err = cause if isinstance(cause, BaseException) else exc
    return isinstance(err, VectorStoreUnavailable) and not isinstance(err, IndexMissing)


def ctx_id(key: str) -> str:
    """A cache key shortened for a log line (it is a hash: no content)."""
    return key[-12:]


def _usage(prompt: int, completion: int, cached: int) -> Usage:
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )
