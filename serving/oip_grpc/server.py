"""A grpc.aio server around the servicer, for the in-process stack (no Ray proxy there)."""

from __future__ import annotations

import grpc

from .grpc_predict_v2_pb2_grpc import add_GRPCInferenceServiceServicer_to_server
from .servicer import InferenceServicer


async def start_grpc_server(servicer: InferenceServicer, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """Starts serving on host:port (0 picks a free port) in the running event loop; returns the bound port."""
    server = grpc.aio.server()
    add_GRPCInferenceServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, bound
