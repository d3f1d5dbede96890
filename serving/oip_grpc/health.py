"""The standard gRPC health service (``grpc.health.v1.Health``), answered from the same readiness as
HTTP ``/readyz``: SERVING only when every stage is ready, NOT_SERVING otherwise.

Kubernetes' ``grpc:`` probes, grpc_health_probe and load balancers speak this protocol, not KServe's
ServerReady. The service names it knows are ``""`` (the whole server) and the inference service; any
other is NOT_FOUND, as the protocol asks. Like the inference servicer, one class serves both the
in-process grpc.aio server and Ray Serve's gRPC proxy (which calls the ingress deployment's ``Check`` /
``Watch`` by name with the keyword ``grpc_context``; the Gateway deployment inherits this class).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .servicer import SERVICE

log = logging.getLogger(__name__)

# What Ray Serve's gRPCOptions.grpc_servicer_functions (and the chart's serveConfigV2) name beside ADD_SERVICER.
ADD_HEALTH_SERVICER = "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server"
SERVICES = frozenset({"", SERVICE.full_name})
WATCH_POLL_S = 5.0  # how often a Watch stream re-reads readiness

Status = health_pb2.HealthCheckResponse.ServingStatus


class HealthServicer(health_pb2_grpc.HealthServicer):
    def __init__(self, readiness: Callable[[], Awaitable[dict[str, bool]]]) -> None:
        self._health_readiness = readiness

    async def _status(self) -> Any:
        try:
            ready = all((await self._health_readiness()).values())
        except Exception:  # noqa: BLE001 - a readiness check that fails means not ready, never an error
            log.warning("readiness check failed: reporting NOT_SERVING", exc_info=True)
            ready = False
        return health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING

    async def Check(
        self, request: health_pb2.HealthCheckRequest, grpc_context: Any
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in SERVICES:
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details("unknown service; known: '' and " + SERVICE.full_name)
            return health_pb2.HealthCheckResponse()
        return health_pb2.HealthCheckResponse(status=await self._status())

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, grpc_context: Any
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        # An unknown service is SERVICE_UNKNOWN on a watch (the protocol's rule), and the stream stays open.
        last = None
        while True:
            status = (
                await self._status()
                if request.service in SERVICES
                else health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            )
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(WATCH_POLL_S)
