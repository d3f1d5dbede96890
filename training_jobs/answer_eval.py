"""``finserve eval answers``: every row of a golden set answered through the served pipeline, then scored.

Each row is a chat request through :meth:`Pipeline.chat` (input guard, routing, retrieval, context
guard, intent, generation, output guard, audit: the Gateway's path), ``concurrency`` at a time so the
generator's batches fill. What a row leaves behind (the masked answer, the guarded knowledge the
prompt carried, the output guard's findings, finish reason, tokens, latency) is scored afterwards with
the packaged MiniLM (:mod:`.answer_metrics` holds the math). A failed request is counted in ``errors``,
left out of the rates, and counts as inaccurate in a paired comparison.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from finserve.contracts.evaluation import (
    OUT_OF_SCOPE,
    AnswerEvalReport,
    AnswerMetrics,
    IntentRow,
    PairedComparison,
)

from . import answer_metrics as am

log = logging.getLogger(__name__)
WARM_UP = "How do I activate my new card?"


class Embed(Protocol):
    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...


class ChatPath(Protocol):
    """The slice of the serving pipeline the driver needs (``finserve.serving.pipeline.Pipeline``)."""

    async def chat(self, req: Any, ctx: Any) -> Any: ...


@dataclass
class Answered:
    """What one request left: the answer and what it was built from (masked text only)."""

    gold: str
    query: str = ""  # the masked user turn
    answer: str = ""
    knowledge: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    output_pii: dict[str, int] = field(default_factory=dict)
    served_intent: str | None = None
    completion_tokens: int = 0
    latency_ms: float = 0.0
    adapter: str | None = None
    error: str | None = None


@dataclass
class VersionRun:
    """One version's answers to every row, in row order, and the wall time they took."""

    answers: list[Answered]
    seconds: float


async def answer_rows(
    pipeline: ChatPath,
    rows: Sequence[tuple[str, str]],
    *,
    model: str,
    adapter: str | None,
    tenant: str = "default",
    max_tokens: int | None = None,
    concurrency: int = 8,
    on_row: Callable[[], None] | None = None,
) -> VersionRun:
    """Ask every row through ``pipeline.chat`` (greedy, one user turn) with ``adapter`` forced (None: the route)."""
    from finserve.serving.errors import map_error
    from finserve.serving.pipeline import RequestContext
    from finserve.serving.schemas import ChatCompletionRequest

    def request(text: str, tokens: int | None) -> ChatCompletionRequest:
        return ChatCompletionRequest(
            model=model, messages=[{"role": "user", "content": text}], max_tokens=tokens, temperature=0.0
        )

    # One untimed one-token request loads the adapter, so latencies are the steady state. A fixed text,
    # so a golden row that the guard blocks is an error row, not a failed run.
    # override_any_version: the evaluation may ask any registry version, not only the route's (in-process only).
    warm = RequestContext(tenant=tenant, adapter_override=adapter, override_any_version=True)
    await pipeline.chat(request(WARM_UP, 1), warm)
    out = [Answered(gold=gold) for _, gold in rows]
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, text: str) -> None:
        async with gate:
            ctx = RequestContext(tenant=tenant, adapter_override=adapter, override_any_version=True)
            row = out[i]
            t0 = time.perf_counter()
            try:
                done = await pipeline.chat(request(text, max_tokens), ctx)
            except Exception as exc:  # a failed request is an error row, not a crashed evaluation
                row.error = map_error(exc).code
                log.warning("row %d failed: %s (%s)", i, row.error, type(exc).__name__)
            else:
                row.latency_ms = (time.perf_counter() - t0) * 1000
                row.answer = done.choices[0].message.content
                row.finish_reason = done.choices[0].finish_reason
                row.completion_tokens = done.usage.completion_tokens
                row.knowledge = list(ctx.knowledge)
                row.query = ctx.masked_input
                row.output_pii = dict(ctx.pii.get("output", {}))
                row.served_intent = ctx.intent.label if ctx.intent else None
                row.adapter = str(ctx.choice.adapter) if ctx.choice else None
            if on_row:
                on_row()

    started = time.perf_counter()
    await asyncio.gather(*(one(i, text) for i, (text, _) in enumerate(rows)))
    return VersionRun(out, time.perf_counter() - started)


def _scope_decided(a: Answered) -> bool:
    """A row the out-of-scope gate decided (turned away), or should have (golden label out_of_scope): scored by
    :func:`answer_metrics.scope_score`, with no embedding."""
    return OUT_OF_SCOPE in (a.served_intent, a.gold)


class AnswerScorer:
    """Scores answers against the reference answers and the knowledge, with one embedder.

    Embeddings are cached by text: the same knowledge chunks come back for many rows.
    """

    def __init__(
        self, embedder: Embed, references: Mapping[str, str], threshold: float = am.GROUNDEDNESS_THRESHOLD
    ) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.intents = sorted(references)
        self._cache: dict[str, np.ndarray] = {}
        self.reference_vectors = np.asarray(self.embedder.embed([references[i] for i in self.intents]))
        self._dim = int(self.reference_vectors.shape[1])

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            for text, vec in zip(missing, self.embedder.embed(missing), strict=True):
                self._cache[text] = vec
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def prefetch(self, answers: Sequence[Answered]) -> None:
        """Embed every text the answers need in a few large batches (much faster than row by row)."""
        texts: list[str] = []
        for a in answers:
            if a.error is None and not am.is_empty(a.answer) and not _scope_decided(a):
                texts.append(a.answer)
                texts.extend(am.claim_sentences(a.answer, a.finish_reason))
                texts.extend(s for k in a.knowledge for s in am.split_sentences(k))
        self.vectors(texts)

    def score(self, a: Answered) -> am.RowScore:
        if _scope_decided(a):
            return am.scope_score(a.gold, a.served_intent == OUT_OF_SCOPE, a.answer, a.output_pii)
        empty = am.is_empty(a.answer)
        sentences = am.claim_sentences(a.answer, a.finish_reason)
        knowledge = [s for k in a.knowledge for s in am.split_sentences(k)]
        accurate = False
        supported = 0
        if not empty:
            accurate = (
                am.nearest_intent(self.vectors([a.answer])[0], self.reference_vectors, self.intents) == a.gold
            )
            if sentences:
                support = am.support_scores(self.vectors(sentences), self.vectors(knowledge))
                supported = int(np.sum(support >= self.threshold))
        return am.RowScore(
            intent=a.gold,
            accurate=accurate,
            sentences=len(sentences),
            supported=supported,
            truncated=am.is_truncated(a.answer, a.finish_reason),
            empty=empty,
            repetitive=am.is_repetitive(a.answer),
            pii=am.has_pii(a.output_pii),
            words=len(am.words(a.answer)),
        )


def metrics(adapter: str, run: VersionRun, scores: Sequence[am.RowScore]) -> AnswerMetrics:
    """AnswerMetrics of one version from its run and the scores of its answered rows."""
    ok = [a for a in run.answers if a.error is None]
    agg = am.aggregate(scores)
    served = [a for a in ok if a.served_intent is not None]
    latencies = [a.latency_ms for a in ok]
    tokens = sum(a.completion_tokens for a in ok)
    return AnswerMetrics(
        adapter=adapter,
        rows=agg.rows,
        errors=len(run.answers) - len(ok),
        answer_accuracy=agg.answer_accuracy,
        groundedness=agg.groundedness,
        unsupported_sentences=agg.unsupported_sentences,
        truncated_rate=agg.truncated_rate,
        empty_rate=agg.empty_rate,
        repetition_rate=agg.repetition_rate,
        pii_leaks=agg.pii_leaks,
        intent_accuracy=sum(a.served_intent == a.gold for a in served) / len(served) if served else None,
        out_of_scope_rate=sum(a.served_intent == OUT_OF_SCOPE for a in ok) / len(ok) if ok else 0.0,
        mean_words=agg.mean_words if agg.rows else None,
        latency_p50_ms=am.percentile(latencies, 50),
        latency_p95_ms=am.percentile(latencies, 95),
        tokens_per_s=tokens / run.seconds if run.seconds > 0 else None,
    )


def per_intent(scores: Sequence[am.RowScore]) -> dict[str, IntentRow]:
    by: dict[str, list[am.RowScore]] = defaultdict(list)
    for s in scores:
        by[s.intent].append(s)
    out = {}
    for intent in sorted(by):
        agg = am.aggregate(by[intent])
        out[intent] = IntentRow(
            rows=agg.rows, answer_accuracy=agg.answer_accuracy, groundedness=agg.groundedness
        )
    return out


def accurate_flags(run: VersionRun, scored: Mapping[int, am.RowScore]) -> list[bool]:
    """Per row, in row order: accurate or not (an error row is not)."""
    return [bool(scored[i].accurate) if i in scored else False for i in range(len(run.answers))]


def score_run(scorer: AnswerScorer, run: VersionRun) -> dict[int, am.RowScore]:
    scorer.prefetch(run.answers)
    return {i: scorer.score(a) for i, a in enumerate(run.answers) if a.error is None}


def build_report(
    scorer: AnswerScorer,
    dataset: str,
    dataset_sha256: str | None,
    candidate: tuple[str, VersionRun],
    baseline: tuple[str, VersionRun] | None,
    seconds: float,
) -> AnswerEvalReport:
    """Scores every answered row and assembles the report (with the paired test when there is a baseline)."""
    name, run = candidate
    scored = score_run(scorer, run)
    report = AnswerEvalReport(
        dataset=dataset,
        dataset_sha256=dataset_sha256,
        candidate=metrics(_served(name, run), run, list(scored.values())),
        groundedness_threshold=scorer.threshold,
        seconds=seconds,
        per_intent=per_intent(list(scored.values())),
    )
    if baseline is None:
        return report
    base_name, base_run = baseline
    base_scored = score_run(scorer, base_run)
    test = am.paired_test(accurate_flags(run, scored), accurate_flags(base_run, base_scored))
    comparison = PairedComparison(
        test="mcnemar",
        delta=test.delta,
        ci_low=test.ci_low,
        ci_high=test.ci_high,
        p_value=test.p_value,
        candidate_only=test.candidate_only,
        baseline_only=test.baseline_only,
        verdict=test.verdict,  # type: ignore[arg-type]
    )
    return report.model_copy(
        update={
            "baseline": metrics(_served(base_name, base_run), base_run, list(base_scored.values())),
            "comparison": comparison,
        }
    )


def _served(requested: str, run: VersionRun) -> str:
    """The version that actually answered (the route's stable when none was named)."""
    return next((a.adapter for a in run.answers if a.adapter), requested)


def write_answers(path: Path, scorer: AnswerScorer, runs: Sequence[tuple[str, VersionRun]]) -> int:
    """Every row of every version as JSON lines: the masked query, answer and knowledge, and its scores,
    for reading why a figure moved. Masked text only, as the audit log holds it. Returns lines written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for name, run in runs:
            version = _served(name, run)
            for i, a in enumerate(run.answers):
                line: dict[str, Any] = {"version": version, "row": i, **asdict(a)}
                if a.error is None:
                    line["score"] = asdict(scorer.score(a))
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")
                n += 1
    return n
