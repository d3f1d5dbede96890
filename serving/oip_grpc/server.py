"""A grpc.aio server around the servicers, for the in-process stack (no Ray proxy there)."""

from __future__ import annotations

import grpc
from grpc_health.v1.health_pb2_grpc import add_HealthServicer_to_server

from .grpc_predict_v2_pb2_grpc import add_GRPCInferenceServiceServicer_to_server
from .health import HealthServicer
from .servicer import InferenceServicer


async def start_grpc_server(
    servicer: InferenceServicer, host: str, port: int, health: HealthServicer | None = None
) -> tuple[grpc.aio.Server, int]:
    """Starts serving on host:port (0 picks a free port) in the running event loop; returns the bound port.
    ``health`` adds grpc.health.v1.Health (the in-process stack always passes it)."""
    server = grpc.aio.server()
    add_GRPCInferenceServiceServicer_to_server(servicer, server)
    if health is not None:
        add_HealthServicer_to_server(health, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, bound
