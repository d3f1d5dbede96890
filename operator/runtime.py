"""The live ports for a running operator: Prometheus and the Kubernetes API, opened and closed once,
and the operator's own metrics with the server that exposes them."""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes_asyncio import client

from .adapters.jobs import KubeEvaluationJobs
from .adapters.kube import api_client
from .adapters.prometheus import PrometheusSource
from .adapters.routing import ConfigMapRouteStore
from .adapters.workloads import KubeWorkloads
from .metrics import MetricsServer, RolloutMetrics
from .ports import Ports
from .settings import OperatorConfig


@dataclass
class Runtime:
    config: OperatorConfig
    ports: Ports
    metrics: RolloutMetrics
    _api: client.ApiClient
    _prometheus: PrometheusSource
    _metrics_server: MetricsServer | None

    @classmethod
    async def connect(cls, config: OperatorConfig) -> Runtime:
        # The metrics port first: if it is taken, startup fails before anything else is opened.
        metrics = RolloutMetrics()
        server = MetricsServer(metrics.registry, config.metrics_port) if config.metrics_port else None
        if server is not None:
            server.start()
        api = await api_client()
        prometheus = PrometheusSource(config.prometheus.url, timeout=config.prometheus.timeout)
        ports = Ports(
            metrics=prometheus,
            routes=ConfigMapRouteStore(api, config.routing_configmap),
            workloads=KubeWorkloads(api),
            jobs=KubeEvaluationJobs(api, config.eval_job_template),
        )
        return cls(
            config=config,
            ports=ports,
            metrics=metrics,
            _api=api,
            _prometheus=prometheus,
            _metrics_server=server,
        )

    async def aclose(self) -> None:
        if self._metrics_server is not None:
            await self._metrics_server.stop()
        await self._prometheus.aclose()
        await self._api.close()
