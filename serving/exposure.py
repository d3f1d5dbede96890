"""What the serving process shows besides the API: API docs, and where /metrics is served.

Everything here is off or on loopback unless configured: the OpenAPI docs describe every route to
anyone who asks, and /metrics tells load, tenants and adapter versions. By default /metrics has its own
listener on 127.0.0.1 (Prometheus on the same host or pod scrapes it there); on the API port it answers
only when ``metrics_on_api_port`` is set, and then (auth on) only to the `admin` scope
(serving/access/policy.py).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from pydantic import Field

from finserve.contracts import StrictModel

log = logging.getLogger(__name__)


def _metrics_port() -> int | None:
    value = os.environ.get("FINSERVE_METRICS_PORT", "9464")
    return int(value) if value and value != "off" else None


class ExposureConfig(StrictModel):
    """Which non-API endpoints exist and on which address they listen."""

    docs: bool = Field(False, description="Serve /docs and /openapi.json (off: they map the API for anyone).")
    metrics_port: int | None = Field(
        default_factory=_metrics_port,
        ge=0,
        le=65535,
        description="Port of the own /metrics listener (env FINSERVE_METRICS_PORT, default 9464; `off` or None: "
        "no listener). A replica that finds it taken logs a warning and goes on without one.",
    )
    metrics_host: str = Field(
        default_factory=lambda: os.environ.get("FINSERVE_METRICS_HOST", "127.0.0.1"),
        description="Bind address of the /metrics listener (env FINSERVE_METRICS_HOST).",
    )
    ray_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="`finserve up` only: the port of Ray's metrics agent, which serves what the Ray replicas "
        "record (the Generator's engine figures as ray_finserve_engine_*, Ray Serve's own); None: a port Ray "
        "picks. In Kubernetes KubeRay sets it (metrics-export-port, 8080).",
    )
    metrics_on_api_port: bool = Field(
        False,
        description="Also answer /metrics on the API port (with auth on, to the `admin` scope only: "
        "serving/access/policy.py); off: 404 there.",
    )


def docs_options(config: ExposureConfig) -> dict[str, Any]:
    """FastAPI's docs arguments: all off unless configured."""
    if config.docs:
        return {"docs_url": "/docs", "redoc_url": None, "openapi_url": "/openapi.json"}
    return {"docs_url": None, "redoc_url": None, "openapi_url": None}


class MetricsListener:
    """The own /metrics HTTP server (prometheus_client's, in a daemon thread), stopped with the app."""

    def __init__(self, server: Any = None, thread: threading.Thread | None = None) -> None:
        self.server, self.thread = server, thread

    @property
    def port(self) -> int | None:
        return self.server.server_address[1] if self.server is not None else None

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def start_metrics_listener(config: ExposureConfig, registry: CollectorRegistry) -> MetricsListener:
    """Serves ``registry`` on metrics_host:metrics_port (0: any free port); a taken port is logged, not fatal."""
    if config.metrics_port is None:
        return MetricsListener()
    try:
        server, thread = start_http_server(config.metrics_port, addr=config.metrics_host, registry=registry)
    except OSError as exc:
        log.warning(
            "metrics listener not started on %s:%s (%s): this process's metrics are not served there",
            config.metrics_host,
            config.metrics_port,
            exc.strerror or exc.__class__.__name__,
        )
        return MetricsListener()
    return MetricsListener(server, thread)
