"""The HTTP app's server spans (OpenTelemetry's FastAPI instrumentation) and the trace id in responses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from opentelemetry.instrumentation.propagators import (
    ResponsePropagator,
    default_setter,
    set_global_response_propagator,
)

from .process import setup_process
from .request import TRACE_ID_HEADER, trace_headers

# Probes and scrapes would be most spans and tell nothing.
EXCLUDED_URLS = "/healthz,/readyz,/metrics,/v2/health/live,/v2/health/ready"


class TraceIdResponsePropagator(ResponsePropagator):
    """Answers with the server span's W3C ``traceparent`` and its bare trace id in ``x-trace-id``."""

    def inject(self, carrier: Any, context: Any = None, setter: Any = default_setter) -> None:
        headers = trace_headers(context)
        if not headers:
            return
        for name, value in headers.items():
            setter.set(carrier, name, value)
        setter.set(carrier, "access-control-expose-headers", f"traceparent,{TRACE_ID_HEADER}")


def instrument_api(api: FastAPI, service: str = "finserve-gateway") -> bool:
    """Set up this process (logs, tracing) and, when tracing is on, give ``api`` a server span per request
    (child of the client's ``traceparent``) and trace-id response headers. Off: the app is untouched."""
    if not setup_process(service):
        return False
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    set_global_response_propagator(TraceIdResponsePropagator())
    FastAPIInstrumentor.instrument_app(api, excluded_urls=EXCLUDED_URLS, exclude_spans=["receive", "send"])
    return True
