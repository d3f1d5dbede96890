"""A request's trace id and log fields, and the spans of the pipeline's stages.

The transport's server span (FastAPI instrumentation for HTTP, ``server_span`` for gRPC) is current
while the pipeline runs, so stage spans are its children and Ray hops carry it on. While tracing is
off a client's ``traceparent`` still names the trace the audit line records (parsed, nothing started).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from finserve.contracts.telemetry import bind_request_fields, span, trace_id_hex, tracer, tracing_active

if TYPE_CHECKING:
    from ..pipeline import RequestContext

_W3C = TraceContextTextMapPropagator()
SPAN_PREFIX = "finserve."
TRACE_ID_HEADER = "x-trace-id"


def trace_headers(context: Any = None) -> dict[str, str]:
    """The current server span as response headers (HTTP) or trailing metadata (gRPC): W3C ``traceparent``
    and the bare trace id in ``x-trace-id``; empty while tracing is off (no span, nothing to name)."""
    span = trace.get_current_span(context).get_span_context()
    if not span.is_valid:
        return {}
    trace_id = format(span.trace_id, "032x")
    return {
        "traceparent": f"00-{trace_id}-{span.span_id:016x}-{span.trace_flags:02x}",
        TRACE_ID_HEADER: trace_id,
    }


def client_trace_id(headers: Mapping[str, str]) -> str | None:
    """The trace id of a valid W3C ``traceparent`` header (None without one or when malformed)."""
    if "traceparent" not in headers:
        return None
    return trace_id_hex(trace.get_current_span(_W3C.extract(headers)))


def attach(ctx: RequestContext, headers: Mapping[str, str]) -> None:
    """Give ``ctx`` its trace id (the current span's, else the client's traceparent's) and bind the
    request's log fields (ids only) to this task."""
    ctx.trace_id = trace_id_hex() or client_trace_id(headers)
    bind_request_fields(lambda: log_fields(ctx))


def log_fields(ctx: RequestContext) -> dict[str, Any]:
    adapter = ctx.choice.adapter if ctx.choice else None
    return {
        "request_id": ctx.request_id,
        "trace_id": ctx.trace_id,
        "tenant": ctx.tenant,
        "model": ctx.model,
        "adapter_version": str(adapter) if adapter else None,
    }


@contextlib.contextmanager
def server_span(name: str, headers: Mapping[str, str]) -> Iterator[trace.Span]:
    """A SERVER span for a call that arrived without HTTP instrumentation (gRPC), child of the client's
    ``traceparent`` when it sent one, current for the call's duration."""
    with span(
        name,
        context=_W3C.extract(headers),
        kind=trace.SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.method": name},
    ) as current:
        yield current


@contextlib.contextmanager
def stage_span(stage: str, ctx: RequestContext | None = None) -> Iterator[trace.Span]:
    """The span of one pipeline stage, current inside the block, tagged with the routed adapter."""
    if not tracing_active():  # off: no context switch, no span object
        yield trace.INVALID_SPAN
        return
    with span(SPAN_PREFIX + stage) as current:
        _tag(current, ctx)
        yield current


def _tag(span: trace.Span, ctx: RequestContext | None) -> None:
    if span.is_recording() and ctx is not None:
        span.set_attribute("finserve.request_id", ctx.request_id)
        if ctx.choice is not None:
            span.set_attribute("finserve.adapter", ctx.choice.adapter.name)
            span.set_attribute("finserve.adapter_version", ctx.choice.adapter.version)
            span.set_attribute("finserve.route", ctx.choice.role)


def note(**attributes: str | int | float | bool | None) -> None:
    """Set attributes (counts, tiers: never content) on the current stage's span."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({f"finserve.{k}": v for k, v in attributes.items() if v is not None})


def open_stage_span(stage: str, ctx: RequestContext) -> trace.Span:
    """A stage span that is not made current (a stream's generate stage spans many yields): end it with
    ``end_stage_span``."""
    if not tracing_active():
        return trace.INVALID_SPAN
    span = tracer().start_span(SPAN_PREFIX + stage)
    _tag(span, ctx)
    return span


def end_stage_span(span: trace.Span, **attributes: str | int | float | bool | None) -> None:
    if span.is_recording():
        span.set_attributes({f"finserve.{k}": v for k, v in attributes.items() if v is not None})
    span.end()
