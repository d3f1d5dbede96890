"""Shadow traffic: a canary answers a sample of stable requests too, and its answer is compared, never returned.

The router marks a request as mirrored (routing.mirror); once the live answer is complete the pipeline
hands a :class:`ShadowJob` to :class:`ShadowRunner`, which runs it as a background task beside the live
traffic. The shadow reuses the live request's guarded prompt and retrieved, guarded knowledge (no second
retrieval), asks the canary for its intent and its answer, guards that answer, compares it with the stable
answer (:func:`compare`, pure), exports ``finserve_shadow_*`` metrics labelled by the canary's version and
writes one audit line with route ``shadow``.

Bounded so it can never cost a live request anything but spare capacity: at most ``max_in_flight`` shadows
run at once and none starts while the live generations in flight reach ``busy_in_flight``; a shadow that
cannot start is dropped and counted. A shadow's failure is counted and audited, never raised.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from finserve.contracts import AdapterRef

from .audit.log import AuditRecord
from .config import ShadowConfig
from .errors import map_error
from .inference.types import GenerationRequest
from .intent import IntentConfig, decide, wants_head
from .intent.vote import Example
from .metrics import ServingMetrics
from .stages import AuditStage, GeneratorStage, GuardStage, IntentStage, RetrievalStage

log = logging.getLogger(__name__)

SHADOW_ROUTE = "shadow"


@dataclass(frozen=True)
class ShadowJob:
    """What a mirrored request takes from its live twin; every text in it is already masked."""

    live_request_id: str
    tenant: str
    model: str
    canary: AdapterRef
    masked_input: str
    stable_answer: str
    stable_intent: str | None
    request: GenerationRequest  # the live request's guarded prompt, with the canary's adapter
    examples: Sequence[Example] = field(default_factory=tuple)  # retrieval's nearest examples, for the intent

    @property
    def request_id(self) -> str:
        return f"{self.live_request_id}-shadow"


@dataclass(frozen=True)
class Comparison:
    """How the shadow answer differs from the stable one."""

    similarity: float  # cosine of the two answers' embeddings, clipped to 0..1
    intent_agree: bool | None  # canary's served intent == stable's; None when the stable had none
    pii: int  # PII entities the output guard found in the shadow answer
    length_ratio: float | None  # shadow words / stable words; None when the stable answer has no words


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity clipped to 0..1 (opposite directions count as no similarity); 0 for a zero vector."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return min(1.0, max(0.0, dot / norm)) if norm else 0.0


def length_ratio(stable: str, shadow: str) -> float | None:
    """Shadow words per stable word; None when the stable answer is empty (no ratio to speak of)."""
    words = len(stable.split())
    return len(shadow.split()) / words if words else None


def compare(
    stable: str,
    shadow: str,
    vectors: Sequence[Sequence[float]],
    stable_intent: str | None,
    shadow_intent: str | None,
    pii: dict[str, int],
) -> Comparison:
    """Pure: the comparison of two masked answers, given their embeddings (stable first) and intents."""
    agree = None if stable_intent is None else shadow_intent == stable_intent
    return Comparison(
        similarity=cosine(vectors[0], vectors[1]),
        intent_agree=agree,
        pii=sum(pii.values()),
        length_ratio=length_ratio(stable, shadow),
    )


class ShadowRunner:
    """Runs shadow jobs as background tasks of the current event loop, bounded; :meth:`aclose` cancels them."""

    def __init__(
        self,
        config: ShadowConfig,
        intent_config: IntentConfig,
        *,
        guard: GuardStage,
        retrieval: RetrievalStage,
        intent: IntentStage,
        generator: GeneratorStage,
        audit: AuditStage,
        metrics: ServingMetrics,
    ) -> None:
        self.config, self.intent_config = config, intent_config
        self.guard, self.retrieval, self.intent = guard, retrieval, intent
        self.generator, self.audit, self.metrics = generator, audit, metrics
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def submit(self, job: ShadowJob, live_in_flight: int) -> bool:
        """Start ``job`` unless the limits say no (then it is counted as dropped). Never blocks, never raises."""
        labels = (job.model, job.canary.name, job.canary.version)
        if self.in_flight >= self.config.max_in_flight or live_in_flight >= self.config.busy_in_flight:
            self.metrics.shadow_requests.labels(*labels, "dropped").inc()
            return False
        task = asyncio.get_running_loop().create_task(self._run(job), name=job.request_id)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def drain(self) -> None:
        """Wait for every shadow now running (tests, and shutdowns that can afford to let them finish)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def cancel(self) -> None:
        """Ask every running shadow to stop (no audit line for a cancelled one); :meth:`aclose` also waits."""
        for task in list(self._tasks):
            task.cancel()

    async def aclose(self) -> None:
        """Cancel every running shadow and wait until they are gone."""
        tasks = list(self._tasks)
        self.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, job: ShadowJob) -> None:
        labels = (job.model, job.canary.name, job.canary.version)
        t0 = time.perf_counter()
        status, error, output, intent, pii = 200, None, None, None, {}
        try:
            intent, output, pii, comparison = await self._answer_and_compare(job)
        except asyncio.CancelledError:
            # Shutdown: the process is going away; count it as not compared and leave the audit log alone.
            self.metrics.shadow_requests.labels(*labels, "dropped").inc()
            raise
        except Exception as exc:  # noqa: BLE001 - a shadow's failure must never reach the live request
            mapped = map_error(exc)
            status, error = mapped.status, mapped.code
            self.metrics.shadow_requests.labels(*labels, "failed").inc()
            log.warning("shadow %s on %s failed: %s", job.request_id, job.canary, mapped.code)
        else:
            self._observe(labels, comparison)
        record = AuditRecord(
            time=datetime.now(UTC),
            request_id=job.request_id,
            tenant=job.tenant,
            model=job.model,
            adapter=str(job.canary),
            route=SHADOW_ROUTE,
            intent=intent,
            input=job.masked_input,
            output=output,
            # The input's and context's findings are on the live request's line; this line adds the answer's.
            pii={"output": pii} if output is not None else {},
            status=status,
            error=error,
            latency_ms=round((time.perf_counter() - t0) * 1000, 3),
        )
        try:
            await self.audit.append(record)
        except Exception:  # noqa: BLE001 - nobody waits on a shadow: say so in the log
            log.exception("audit line of shadow %s not written", job.request_id)

    async def _answer_and_compare(self, job: ShadowJob) -> tuple[str, str, dict[str, int], Comparison]:
        head = None
        if wants_head(self.intent_config, job.canary):
            # The head's hop overlaps the generation, as it overlaps retrieval on the live path.
            head = asyncio.ensure_future(self.intent.head_scores(job.masked_input, job.canary))
        try:
            result = await self.generator.generate(job.request)
            scores = await head if head is not None else None
        except BaseException:
            if head is not None:
                head.cancel()
                await asyncio.gather(head, return_exceptions=True)
            raise
        intent = decide(scores, job.examples, self.intent_config.vote_temperature).label
        [guarded] = await self.guard.scan_many([result.text])
        pii = guarded.counts()
        vectors = await self.retrieval.embed_texts([job.stable_answer, guarded.text])
        return (
            intent,
            guarded.text,
            pii,
            compare(job.stable_answer, guarded.text, vectors, job.stable_intent, intent, pii),
        )

    def _observe(self, labels: tuple[str, str, str], c: Comparison) -> None:
        m = self.metrics
        m.shadow_requests.labels(*labels, "compared").inc()
        m.shadow_similarity.labels(*labels).observe(c.similarity)
        if c.intent_agree is not None:
            m.shadow_intent_agreement.labels(*labels, "true" if c.intent_agree else "false").inc()
        # Touch the series even at 0, so "no PII in shadow answers" is a value, not missing data.
        m.shadow_pii.labels(*labels).inc(c.pii)
        if c.length_ratio is not None:
            m.shadow_length_ratio.labels(*labels).observe(c.length_ratio)
