"""The operator's own configuration, from environment variables (read when the operator starts)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from finserve.contracts import StrictModel
from pydantic import Field

from .adapters.routing import DEFAULT_CONFIGMAP

ENV = {
    "prometheus_url": "FINSERVE_PROMETHEUS_URL",
    "prometheus_timeout": "FINSERVE_PROMETHEUS_TIMEOUT",
    "routing_configmap": "FINSERVE_ROUTING_CONFIGMAP",
    "poll_seconds": "FINSERVE_OPERATOR_POLL_SECONDS",
    "metrics_port": "FINSERVE_OPERATOR_METRICS_PORT",
    "eval_job_template": "FINSERVE_EVAL_JOB_TEMPLATE",
}


class OperatorConfig(StrictModel):
    """Where metrics come from, where routes go, how often a running rollout is looked at, and
    where the operator's own metrics are served."""

    prometheus_url: str = Field(
        "http://prometheus-operated.monitoring:9090", description="Prometheus base URL (HTTP API)."
    )
    prometheus_timeout: float = Field(10.0, gt=0, description="Seconds per Prometheus query.")
    routing_configmap: str = Field(
        DEFAULT_CONFIGMAP, description="Name of the routing-table ConfigMap in each rollout's namespace."
    )
    poll_seconds: float = Field(
        15.0,
        gt=0,
        description="Longest wait between ticks of a running rollout; bounds how late a "
        "command annotation is seen.",
    )
    metrics_port: int = Field(
        8090,
        ge=0,
        le=65535,
        description="Port of the operator's /metrics (rollout phase and canary weight gauges); "
        "0 turns it off.",
    )
    eval_job_template: str | None = Field(
        None,
        description="File holding the evaluation Job template (YAML, a batch/v1 Job); the chart mounts it. "
        "Without it every evaluation gate is an Error.",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        source = os.environ if env is None else env
        return cls.model_validate({field: source[var] for field, var in ENV.items() if source.get(var)})
