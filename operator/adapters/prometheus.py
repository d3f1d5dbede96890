"""Prometheus HTTP API (instant queries) as a MetricsSource: one number, no data, or an error."""

from __future__ import annotations

import math
from typing import Any

import httpx
from opentelemetry.trace import StatusCode

from finserve.contracts.telemetry import span

from ..core.observations import Reading


def parse_result(payload: dict[str, Any]) -> Reading:
    """A /api/v1/query response body to a Reading. More than one series is a query error."""
    if payload.get("status") != "success":
        return Reading(error=f"{payload.get('errorType', 'error')}: {payload.get('error', 'query failed')}")
    data = payload.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    sample: Any
    if kind == "scalar":
        sample = result
    elif kind == "vector":
        if not result:
            return Reading()
        if len(result) > 1:
            return Reading(error=f"query returned {len(result)} series; aggregate it to one (sum, avg, ...)")
        sample = result[0].get("value")
    else:
        return Reading(error=f"unsupported result type {kind!r}; use an instant vector or scalar")
    try:
        value = float(sample[1])
    except (TypeError, ValueError, IndexError):
        return Reading(error=f"unreadable sample {sample!r}")
    # NaN is what 0/0 gives when nothing happened (no requests, empty histogram): no data.
    return Reading() if math.isnan(value) else Reading(value=value)


class PrometheusSource:
    """Instant queries against a Prometheus server; every failure becomes ``Reading(error=...)``."""

    def __init__(self, base_url: str, timeout: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def query(self, name: str, promql: str) -> Reading:
        # A span per query (the httpx instrumentation adds the HTTP client span and traceparent header).
        with span(
            "finserve.prometheus.query", attributes={"finserve.metric": name}, tracer_name="finserve.operator"
        ) as current:
            reading = await self._query(promql)
            if reading.error and current.is_recording():
                current.set_status(StatusCode.ERROR, reading.error)
            return reading

    async def _query(self, promql: str) -> Reading:
        try:
            response = await self._client.get(f"{self.base_url}/api/v1/query", params={"query": promql})
        except httpx.HTTPError as exc:
            return Reading(error=f"prometheus unreachable at {self.base_url}: {type(exc).__name__}: {exc}")
        try:
            payload = response.json()
        except ValueError:
            return Reading(error=f"prometheus answered HTTP {response.status_code} without JSON")
        if response.status_code >= 400 and payload.get("status") == "success":
            return Reading(error=f"prometheus answered HTTP {response.status_code}")
        return parse_result(payload)

    async def aclose(self) -> None:
        await self._client.aclose()
