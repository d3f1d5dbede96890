"""``finserve eval``: every row of a text,category CSV through the served intent path, then metrics.

The driver talks to anything with the pipeline's ``classify(text, adapter, tenant)`` (the
in-process :class:`finserve.serving.pipeline.Pipeline`: PII guard on the input, retrieval, intent
classifier), so what it measures is what the Gateway serves. A row whose request fails counts as
a wrong prediction with the label ``<error>``, and the error types are reported.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pydantic import Field

from finserve.contracts import AdapterRef

from .metrics import ClassificationReport, classification_report

ERROR_LABEL = "<error>"


class _Prediction(Protocol):
    label: str
    method: str


class _Outcome(Protocol):
    intent: _Prediction
    pii: dict[str, int]


class IntentPath(Protocol):
    """The slice of the pipeline the driver needs."""

    async def classify(
        self, text: str, adapter: AdapterRef | None = None, tenant: str = "default"
    ) -> Any: ...


class EvalReport(ClassificationReport):
    """Metrics plus how the run went; ``accuracy`` and ``macro_f1`` are top-level keys of its JSON."""

    adapter: str | None = Field(description="NAME@VERSION evaluated (None: the route's stable adapter).")
    seconds: float = Field(description="Wall time of the timed rows (warm-up excluded).")
    queries_per_s: float = Field(description="Rows per second through guard + retrieval + intent.")
    concurrency: int = Field(description="Requests in flight at once.")
    methods: dict[str, int] = Field(description="Predictions per method (head, head+vote, vote).")
    errors: dict[str, int] = Field(description="Failed rows per exception type (counted as wrong).")
    pii_entities: dict[str, int] = Field(description="PII entities the guard masked in the inputs, per type.")


async def evaluate(
    path: IntentPath,
    rows: Sequence[tuple[str, str]],
    adapter: AdapterRef | None = None,
    tenant: str = "default",
    concurrency: int = 4,
    on_row: Callable[[], None] | None = None,
) -> EvalReport:
    """Classify every row (``concurrency`` at a time) and score the predictions."""
    if not rows:
        raise ValueError("no rows to evaluate")
    # One untimed request loads the adapter and warms caches, so queries/s is the steady state.
    await path.classify(rows[0][0], adapter, tenant)
    predicted: list[str] = [ERROR_LABEL] * len(rows)
    methods: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    pii: Counter[str] = Counter()
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, text: str) -> None:
        async with gate:
            try:
                outcome: _Outcome = await path.classify(text, adapter, tenant)
            except Exception as exc:  # a failed request is a wrong answer, not a crashed evaluation
                errors[type(exc).__name__] += 1
            else:
                predicted[i] = outcome.intent.label
                methods[outcome.intent.method] += 1
                pii.update({k: v for k, v in outcome.pii.items() if v})
            if on_row:
                on_row()

    started = time.perf_counter()
    await asyncio.gather(*(one(i, text) for i, (text, _) in enumerate(rows)))
    seconds = time.perf_counter() - started
    report = classification_report([gold for _, gold in rows], predicted)
    return EvalReport(
        **report.model_dump(),
        adapter=str(adapter) if adapter else None,
        seconds=seconds,
        queries_per_s=len(rows) / seconds if seconds > 0 else 0.0,
        concurrency=concurrency,
        methods=dict(methods),
        errors=dict(errors),
        pii_entities=dict(pii),
    )
