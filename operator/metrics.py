"""The operator's own Prometheus metrics: each ModelRollout's phase and canary weight, and /metrics.

Names come from finserve.contracts.metrics; the chart's alerts and dashboard read them. The gauges
mirror the status each reconcile records, so a restarted operator exports them again as it
resumes every rollout; a deleted rollout's series are removed. Labels name the rollout and its
model, never request content.
"""

from __future__ import annotations

import asyncio
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from finserve.contracts import metrics as names

from .status import Phase, RolloutStatus


class RolloutMetrics:
    """One set of gauges per operator (its own registry: nothing process-global for tests to reset)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = list(names.ROLLOUT_LABELS)
        self.phase = Gauge(
            names.ROLLOUT_PHASE,
            "1 for the ModelRollout's current phase, 0 for the others.",
            [*labels, "phase"],
            registry=self.registry,
        )
        self.canary_weight = Gauge(
            names.ROLLOUT_CANARY_WEIGHT,
            "Percent of the model's traffic on the canary.",
            labels,
            registry=self.registry,
        )
        # The model label each rollout's series carry: an edited spec.model must not leave the old
        # series behind, and prometheus_client>=0.20 cannot remove series by a partial label set.
        self._models: dict[tuple[str, str], str] = {}

    def record(self, namespace: str, name: str, model: str, status: RolloutStatus) -> None:
        if self._models.get((namespace, name), model) != model:
            self.forget(namespace, name)
        self._models[(namespace, name)] = model
        for phase in Phase:
            self.phase.labels(namespace, name, model, phase.value).set(1 if status.phase == phase else 0)
        self.canary_weight.labels(namespace, name, model).set(status.canary_weight)

    def forget(self, namespace: str, name: str) -> None:
        model = self._models.pop((namespace, name), None)
        if model is None:
            return
        for phase in Phase:
            self.phase.remove(namespace, name, model, phase.value)
        self.canary_weight.remove(namespace, name, model)


class MetricsServer:
    """prometheus_client's own HTTP server for a registry, in a daemon thread; stop() closes it."""

    # All interfaces by default: Prometheus scrapes the pod from another one.
    def __init__(self, registry: CollectorRegistry, port: int, host: str = "0.0.0.0") -> None:
        self.registry, self.port, self.host = registry, port, host
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind now (a taken port raises here) and serve /metrics from then on."""
        self._server, self._thread = start_http_server(self.port, self.host, registry=self.registry)

    async def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        await asyncio.to_thread(self._server.shutdown)  # waits for the serve loop's next poll
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None
