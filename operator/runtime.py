"""The live ports for a running operator: Prometheus and the Kubernetes API, opened and closed once."""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes_asyncio import client

from .adapters.kube import api_client
from .adapters.prometheus import PrometheusSource
from .adapters.routing import ConfigMapRouteStore
from .adapters.workloads import KubeWorkloads
from .ports import Ports
from .settings import OperatorConfig


@dataclass
class Runtime:
    config: OperatorConfig
    ports: Ports
    _api: client.ApiClient
    _prometheus: PrometheusSource

    @classmethod
    async def connect(cls, config: OperatorConfig) -> Runtime:
        api = await api_client()
        prometheus = PrometheusSource(config.prometheus_url, timeout=config.prometheus_timeout)
        ports = Ports(
            metrics=prometheus,
            routes=ConfigMapRouteStore(api, config.routing_configmap),
            workloads=KubeWorkloads(api),
        )
        return cls(config=config, ports=ports, _api=api, _prometheus=prometheus)

    async def aclose(self) -> None:
        await self._prometheus.aclose()
        await self._api.close()
