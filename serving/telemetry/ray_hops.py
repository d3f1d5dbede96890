"""The trace context and request log fields across DeploymentHandle calls.

Ray Serve's own tracing is alpha and needs its exporter hook in every process, so the W3C context
travels explicitly: the calling side passes ``_otel=carrier()`` (a small dict, ``{}`` when tracing is
off and no request is bound), the deployment method is wrapped with ``@traced(name)``, which opens a
span under that context and binds the request's log fields for its duration.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from finserve.contracts.telemetry import (
    bind_request_fields,
    request_fields,
    reset_request_fields,
    span,
    tracer,
    tracing_active,
)

_W3C = TraceContextTextMapPropagator()
_LOG_KEY = "finserve.log"  # the request's ids (no content) for the remote side's log lines
_TAKES_CARRIER = "__finserve_takes_carrier__"  # set on what @traced wraps: callers pass _otel=carrier()
F = TypeVar("F", bound=Callable[..., Any])


def carrier() -> dict[str, Any]:
    """The current trace context (``traceparent``/``tracestate``) and request ids, for one hop."""
    out: dict[str, Any] = {}
    if tracing_active():
        _W3C.inject(out)
    fields = request_fields()
    if fields:
        out[_LOG_KEY] = fields
    return out


class _Bound:
    """Trace context attached and log fields bound for a remote call's duration."""

    def __init__(self, name: str, remote: dict[str, Any] | None) -> None:
        self.name, self.remote = name, remote or {}

    def __enter__(self) -> None:
        fields = dict(self.remote.get(_LOG_KEY) or {})
        self._log = bind_request_fields((lambda: fields) if fields else None)
        self._ctx = otel_context.attach(_W3C.extract(self.remote)) if "traceparent" in self.remote else None
        self._span = span(self.name) if tracing_active() else None
        if self._span is not None:
            self._span.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self._span is not None:
            self._span.__exit__(*exc)
        if self._ctx is not None:
            otel_context.detach(self._ctx)
        reset_request_fields(self._log)


def _stream_span(name: str, remote: dict[str, Any] | None) -> trace.Span:
    """A span for a whole stream, never made current: a generator may be resumed from another context,
    where detaching would fail."""
    if not tracing_active():
        return trace.INVALID_SPAN
    parent = _W3C.extract(remote) if remote and "traceparent" in remote else None
    return tracer().start_span(name, context=parent)


def takes_carrier(method: Callable[..., Any]) -> bool:
    """Whether ``method`` was wrapped with ``@traced`` (and so takes ``_otel=carrier()``)."""
    return bool(getattr(method, _TAKES_CARRIER, False))


def traced(name: str) -> Callable[[F], F]:
    """Wrap a deployment method (sync, async or async generator) to take ``_otel=carrier()``.

    Typed as the method it wraps, so a deployment's signatures stay checkable against the stage
    Protocols; the extra keyword is passed only by the handle adapter (serving/ray_handles.py)."""

    def wrap(fn: F) -> F:
        wrapped = _wrap(fn)
        setattr(wrapped, _TAKES_CARRIER, True)
        return cast(F, wrapped)

    def _wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def agen(*args: Any, _otel: dict[str, Any] | None = None, **kwargs: Any) -> Any:
                span = _stream_span(name, _otel)
                try:
                    async for item in fn(*args, **kwargs):
                        yield item
                finally:
                    span.end()

            return agen
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def coro(*args: Any, _otel: dict[str, Any] | None = None, **kwargs: Any) -> Any:
                with _Bound(name, _otel):
                    return await fn(*args, **kwargs)

            return coro

        @functools.wraps(fn)
        def sync(*args: Any, _otel: dict[str, Any] | None = None, **kwargs: Any) -> Any:
            with _Bound(name, _otel):
                return fn(*args, **kwargs)

        return sync

    return wrap
