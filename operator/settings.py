"""The operator's own configuration: defaults, then a YAML file, then ``FINSERVE_OPERATOR__<FIELD>[__<FIELD>]``.

The same scheme as serving's (finserve.contracts.settings), with the operator's prefix:
``FINSERVE_OPERATOR__PROMETHEUS__URL=http://prometheus:9090``, ``FINSERVE_OPERATOR__POLL_SECONDS=5``. The
file is ``finserve operator run --config`` or $FINSERVE_OPERATOR_CONFIG. Read once, when the operator starts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from finserve.contracts import StrictModel
from finserve.contracts.settings import NESTED, merge, overrides_reader, read_overrides, unknown_names

from .adapters.routing import DEFAULT_CONFIGMAP

ENV_PREFIX = "FINSERVE_OPERATOR__"
CONFIG_FILE_ENV = "FINSERVE_OPERATOR_CONFIG"
# The flat names earlier builds read (the chart and manifests now set the new ones): still honoured, below the new
# names, with a warning, so an operator deployed from older manifests keeps its Prometheus and ConfigMap.
RENAMED = {
    "FINSERVE_PROMETHEUS_URL": "FINSERVE_OPERATOR__PROMETHEUS__URL",
    "FINSERVE_PROMETHEUS_TIMEOUT": "FINSERVE_OPERATOR__PROMETHEUS__TIMEOUT",
    "FINSERVE_ROUTING_CONFIGMAP": "FINSERVE_OPERATOR__ROUTING_CONFIGMAP",
    "FINSERVE_OPERATOR_POLL_SECONDS": "FINSERVE_OPERATOR__POLL_SECONDS",
    "FINSERVE_OPERATOR_METRICS_PORT": "FINSERVE_OPERATOR__METRICS_PORT",
    "FINSERVE_EVAL_JOB_TEMPLATE": "FINSERVE_OPERATOR__EVAL_JOB_TEMPLATE",
}

log = logging.getLogger(__name__)


class PrometheusConfig(StrictModel):
    """Where canary analysis reads its metrics."""

    url: str = Field(
        "http://prometheus-operated.monitoring:9090", description="Prometheus base URL (HTTP API)."
    )
    timeout: float = Field(10.0, gt=0, description="Seconds per Prometheus query.")


class OperatorConfig(StrictModel):
    """Where metrics come from, where routes go, how often a running rollout is looked at, and
    where the operator's own metrics are served."""

    prometheus: PrometheusConfig = Field(
        default_factory=PrometheusConfig, description="The Prometheus that canary analysis queries."
    )
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


_Overrides = overrides_reader(OperatorConfig, ENV_PREFIX)


def _renamed(environ: Mapping[str, str]) -> dict[str, Any]:
    """The values of the old names that are set, nested as their new names would be."""
    out: dict[str, Any] = {}
    for old, new in RENAMED.items():
        if environ.get(old):
            log.warning("%s is deprecated and will stop being read: set %s instead", old, new)
            value: Any = environ[old]
            for key in reversed(new[len(ENV_PREFIX) :].lower().split(NESTED)):
                value = {key: value}
            out = merge(out, value)
    return out


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The FINSERVE_OPERATOR__... variables as a nested dict of what they touch, over the deprecated names.
    A name under the prefix that matches no field is kept, so validation rejects it by name."""
    env = os.environ if environ is None else environ
    below = merge(_renamed(env), unknown_names(OperatorConfig, ENV_PREFIX, env))
    return merge(below, read_overrides(_Overrides, environ))


def load_operator_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> OperatorConfig:
    """The defaults, the YAML file (``path``, else $FINSERVE_OPERATOR_CONFIG, else none), then the environment's
    overrides, validated (a bad value raises pydantic's ValidationError, located at its field)."""
    env = os.environ if environ is None else environ
    path = path or env.get(CONFIG_FILE_ENV) or None
    data: dict[str, Any] = {}
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    return OperatorConfig.model_validate(merge(data, env_overrides(environ)))


__all__ = [
    "CONFIG_FILE_ENV",
    "ENV_PREFIX",
    "RENAMED",
    "OperatorConfig",
    "PrometheusConfig",
    "env_overrides",
    "load_operator_config",
]
