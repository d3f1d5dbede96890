"""How finserve's processes log and trace, shared by serving and the operator.

Tracing follows the standard ``OTEL_*`` environment variables. It is on only when an exporter has
somewhere to send spans: ``OTEL_TRACES_EXPORTER`` is ``otlp`` (the default) with
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set, or ``console``. Off
(``OTEL_TRACES_EXPORTER=none``, ``OTEL_SDK_DISABLED=true`` or no endpoint) nothing is installed: the
API's no-op tracer answers every call, so spans cost a function call each.

Logs: ``FINSERVE_LOG_FORMAT=json`` (the chart's default) writes one JSON object per line with the
request's ids (request id, trace and span id, tenant, adapter version) taken from a context variable
the transport binds per request; ``text`` (the local default) is the classic one-line format. Log
records carry identifiers only, never request or answer text: callers log ids and exception classes.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context

LOG_FORMAT_ENV = "FINSERVE_LOG_FORMAT"
LOG_LEVEL_ENV = "FINSERVE_LOG_LEVEL"
LOG_FORMATS = ("json", "text")
# The request fields a log line may carry (identifiers only; bounded by the transport's checks).
REQUEST_LOG_FIELDS = ("request_id", "trace_id", "span_id", "tenant", "model", "adapter_version")

# A callable (not a dict) so fields learned later in the request (the routed adapter) need no update.
_request_fields: contextvars.ContextVar[Callable[[], Mapping[str, Any]] | None] = contextvars.ContextVar(
    "finserve_request_log_fields", default=None
)

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}


def bind_request_fields(
    fields: Callable[[], Mapping[str, Any]] | None,
) -> contextvars.Token[Callable[[], Mapping[str, Any]] | None]:
    """Attach a request's log fields to this task (and the tasks it starts); returns the reset token."""
    return _request_fields.set(fields)


def reset_request_fields(token: contextvars.Token[Callable[[], Mapping[str, Any]] | None]) -> None:
    _request_fields.reset(token)


def request_fields() -> dict[str, Any]:
    """The bound request's fields with the current span's ids, without empty values."""
    source = _request_fields.get()
    out = {k: v for k, v in (source() if source else {}).items() if v not in (None, "")}
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        out.setdefault("trace_id", format(span.trace_id, "032x"))
        out["span_id"] = format(span.span_id, "016x")
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the request's fields, extras, exception.

    ``extra={...}`` keys are kept (callers pass identifiers and counts there, never content).
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(request_fields())
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in line and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, with the request id and trace id appended when there is a request."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = request_fields()
        ids = " ".join(f"{k}={fields[k]}" for k in ("request_id", "trace_id") if k in fields)
        return f"{text} [{ids}]" if ids else text


def log_format(default: str = "text") -> str:
    """``FINSERVE_LOG_FORMAT`` (json|text), else ``default``; anything else is a ValueError naming it."""
    value = os.environ.get(LOG_FORMAT_ENV, "").strip().lower() or default
    if value not in LOG_FORMATS:
        raise ValueError(f"{LOG_FORMAT_ENV} must be one of {LOG_FORMATS}, not {value!r}")
    return value


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure_logging(
    fmt: str | None = None,
    *,
    loggers: tuple[str, ...] = ("finserve", "uvicorn", "uvicorn.error", "uvicorn.access"),
) -> str:
    """Give finserve's and uvicorn's loggers one stderr handler in the chosen format (idempotent).

    The handler is attached to these named loggers, not the root: Ray and kopf configure the root
    logger of their processes themselves (and have their own JSON switches, see docs/observability.md).
    """
    fmt = fmt or log_format()
    level = os.environ.get(LOG_LEVEL_ENV, "INFO").upper()
    for name in loggers:
        logger = logging.getLogger(name)
        for h in [h for h in logger.handlers if getattr(h, "_finserve", False)]:
            logger.removeHandler(h)
        handler = logging.StreamHandler(sys.stderr)
        handler._finserve = True  # type: ignore[attr-defined]  # ours to replace on the next call
        handler.setFormatter(formatter(fmt))
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    return fmt


# ---- tracing ----


def tracing_requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether the OTEL_* variables ask for spans to be exported (see the module docstring)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if e.strip()}
    if "console" in exporters:
        return True
    return "otlp" in exporters and bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def tracing_active() -> bool:
    """Whether spans are recorded in this process (an SDK tracer provider is installed): the hot path's
    check, so that with tracing off a stage costs this call and nothing else."""
    return isinstance(trace.get_tracer_provider(), _sdk_provider())


@functools.cache
def _sdk_provider() -> type:
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider


def setup_tracing(service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Install the SDK tracer provider the OTEL_* variables describe, once per process.

    Returns whether tracing is active. A provider already installed (by a test, or an earlier call)
    is kept. Resource attributes and the sampler come from the SDK's own reading of the environment
    (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``); ``service_name``
    is the default service name.
    """
    if tracing_active():
        return True
    env = os.environ if env is None else env
    if not tracing_requested(env):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    attrs = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attrs))
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    if "otlp" in exporters:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if "console" in exporters:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    instrument_libraries()
    return True


def instrument_libraries() -> None:
    """Client spans (and traceparent headers) for the libraries finserve calls out with, where installed."""
    for module, cls in (
        ("opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"),
        ("opentelemetry.instrumentation.redis", "RedisInstrumentor"),
    ):
        try:
            instrumentor = getattr(__import__(module, fromlist=[cls]), cls)()
        except ImportError:
            continue
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()


def tracer(name: str = "finserve") -> trace.Tracer:
    return trace.get_tracer(name)


@contextlib.contextmanager
def span(
    name: str,
    *,
    context: Context | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    tracer_name: str = "finserve",
) -> Iterator[trace.Span]:
    """A current span whose failure records the exception's class only (``error.type``), never its message
    or traceback: messages can quote request content, and spans leave the process."""
    with tracer(tracer_name).start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            if current.is_recording():
                current.set_attribute("error.type", type(exc).__qualname__)
                current.set_status(trace.StatusCode.ERROR)
            raise


def trace_id_hex(span: trace.Span | None = None) -> str | None:
    """The 32-hex trace id of ``span`` (default: the current one), or None outside any trace."""
    ctx = (span or trace.get_current_span()).get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
