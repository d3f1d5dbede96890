"""One request's context: what the transport knows of it and what the pipeline learns on the way, and the
audit line built from it (every outcome, one line)."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from .audit.log import AuditRecord
from .degrade import Deadline
from .intent import IntentPrediction
from .routing import RouteChoice

log = logging.getLogger(__name__)


@dataclass
class RequestContext:
    """Per-request facts from the transport (headers), and what the pipeline learns on the way."""

    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    tenant: str = "default"
    sticky_key: str | None = None
    adapter_override: str | None = None
    # True only for in-process callers (answer evaluation): the override may name any registry version.
    # Client requests may name only a version their model's route serves now (serving/routing.py).
    override_any_version: bool = False
    started: float = field(default_factory=time.perf_counter)
    # Filled in as the request moves through the stages; the audit record is built from these.
    model: str | None = None
    choice: RouteChoice | None = None
    masked_input: str = ""
    masked_output: str | None = None
    intent: IntentPrediction | None = None
    # The version's own intent (its head, before the vote is mixed in); None without a head (base).
    own_intent: str | None = None
    vote: str | None = None  # retrieval's nearest-neighbour intent: the independent second opinion
    knowledge: list[str] = field(
        default_factory=list
    )  # guarded chunks the prompt carried (answer evaluation)
    pii: dict[str, dict[str, int]] = field(default_factory=dict)
    held_back: list[str] = field(default_factory=list)  # ids of retrieved chunks kept out of the prompt
    timings_ms: dict[str, float] = field(default_factory=dict)
    # For the audit line: what the answer was built on, and who asked (None until identity/tracing land).
    citations: list[str] = field(default_factory=list)
    index_version: str | None = None
    principal: str | None = None
    limits: dict[str, str] = field(
        default_factory=dict
    )  # x-ratelimit-* response headers (set by the ingress)
    trace_id: str | None = None
    degraded: str | None = None
    # Graceful degradation (serving/degrade/): the client's deadline (x-finserve-deadline-ms, checked at the
    # ingress), the request's Deadline, the guarded curated answer of the classified intent, which provider
    # generated the answer, and why a degraded answer was given (the failure's error code).
    deadline_ms: int | None = None
    deadline: Deadline | None = None
    curated: str | None = None
    provider: str | None = None
    degraded_cause: str | None = None
    # The question is far from everything the knowledge base covers: answered with intent.scope.answer, unmodelled.
    out_of_scope: bool = False

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


CLIENT_CLOSED = 499  # nginx's "client closed request": the answer was cut off by the client


def audit_record(ctx: RequestContext, status: int, error: str | None, elapsed_ms: float) -> AuditRecord:
    """The audit line for `ctx`. Client values are bounded and escaped by AuditRecord itself; should a
    record still fail its schema, a minimal one saying so is written instead, never none."""
    fields: dict[str, Any] = dict(
        time=datetime.now(UTC),
        request_id=ctx.request_id or "-",
        principal=ctx.principal,
        tenant=ctx.tenant or "-",
        model=ctx.model or "unknown",
        adapter=str(ctx.choice.adapter) if ctx.choice else None,
        route=ctx.choice.role if ctx.choice else None,
        intent=ctx.intent.label if ctx.intent else None,
        citations=ctx.citations,
        index_version=ctx.index_version,
        trace_id=ctx.trace_id,
        degraded=ctx.degraded,
        provider=ctx.provider,
        held_back=ctx.held_back,
        input=ctx.masked_input,
        output=ctx.masked_output,
        pii=ctx.pii,
        status=status,
        error=error if error or ctx.degraded is None else ctx.degraded_cause,
        latency_ms=round(max(elapsed_ms, 0.0), 3),
    )
    try:
        return AuditRecord(**fields)
    except ValidationError as exc:
        bad = ",".join(sorted({str(e["loc"][0]) for e in exc.errors() if e.get("loc")}))
        log.error("audit record of %s failed validation (%s); writing a minimal one", ctx.request_id, bad)
        keep = {
            k: fields[k] for k in ("time", "request_id", "tenant", "model", "input", "status", "latency_ms")
        }
        return AuditRecord(**{**keep, "error": f"audit_record_invalid:{bad}"[:2000]})
