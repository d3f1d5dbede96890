"""Per-process setup: logs in FINSERVE_LOG_FORMAT, tracing from the OTEL_* variables."""

from __future__ import annotations

import logging
import os

from finserve.contracts.telemetry import LOG_FORMAT_ENV, configure_logging, setup_tracing

log = logging.getLogger(__name__)


def setup_process(service: str = "finserve") -> bool:
    """Configure logging and tracing for this process (Ray replicas call it in their constructors);
    returns whether tracing is active.

    Logging is configured only when FINSERVE_LOG_FORMAT is set (the chart sets ``json``): unset, the
    process keeps whatever its launcher set up (pytest's capture, the CLI's console). Both steps are
    idempotent; a bad FINSERVE_LOG_FORMAT is a ValueError naming the variable.
    """
    if os.environ.get(LOG_FORMAT_ENV):
        configure_logging()
    return setup_tracing(service)
