"""The Open Inference Protocol v2 over gRPC, answered by the chat pipeline as REST /v2 is.

One class serves both transports. Ray Serve's gRPC proxy calls the ingress deployment's methods by
RPC name, passing the context as the keyword ``grpc_context`` (so the Gateway deployment inherits
this class); a grpc.aio server (the in-process stack) calls the same methods positionally. Both
contexts offer invocation_metadata, set_code, set_details and set_trailing_metadata: all this uses.

Metadata carries what REST puts in headers (authorization, x-request-id, x-finserve-tenant,
x-finserve-session, x-user-id, x-finserve-adapter), checked by serving/client_fields.py as REST's
headers are; ``model_version`` may name an adapter NAME@VERSION too. Errors never escape as exceptions: Ray's proxy would send their traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc

from ..errors import FinserveError, InvalidRequest, PayloadTooLarge, map_error
from ..gateway import Readiness, audit_rejection, check_api_key, client_fields, fork_context
from ..oip import model_metadata, server_metadata, to_chat_requests, to_infer_response
from ..pipeline import Pipeline
from . import grpc_predict_v2_pb2 as pb
from . import grpc_predict_v2_pb2_grpc as pb_grpc
from .codec import audit_body, to_infer_request, to_proto_metadata, to_proto_response
from .status import error_trailers

log = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]


class Context(Protocol):
    """What grpc.aio.ServicerContext and Ray Serve's RayServegRPCContext have in common here."""

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]] | None: ...
    def set_code(self, code: grpc.StatusCode) -> None: ...
    def set_details(self, details: str) -> None: ...
    def set_trailing_metadata(self, trailing_metadata: Sequence[tuple[str, str | bytes]]) -> None: ...


def fail(context: Context, exc: BaseException, request_id: str | None = None) -> None:
    """Sets the mapped status on the call; unknown errors are logged, never described to the client."""
    m = map_error(exc)
    if m.code == "internal_error":
        log.exception("gRPC request %s failed", request_id or "-", exc_info=exc)
    context.set_code(m.grpc_code)
    context.set_details(m.message)
    context.set_trailing_metadata(error_trailers(m, request_id))


def _rpc(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Turns any exception into a status and an empty response of the RPC's type."""
    response_type = getattr(pb, SERVICE.methods_by_name[method.__name__].output_type.name)

    @functools.wraps(method)
    async def wrapper(self: InferenceServicer, request: Any, grpc_context: Context) -> Any:
        try:
            return await method(self, request, grpc_context)
        except Exception as exc:  # noqa: BLE001 - every error becomes a status
            fail(grpc_context, exc)
            return response_type()

    return wrapper


def _headers(context: Context) -> dict[str, str]:
    return {key.lower(): value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, pipeline: Pipeline, readiness: Readiness) -> None:
        self.pipeline = pipeline
        self._readiness = readiness
        self._fields = client_fields(pipeline)

    @_rpc
    async def ServerLive(self, request: pb.ServerLiveRequest, grpc_context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @_rpc
    async def ServerReady(self, request: pb.ServerReadyRequest, grpc_context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=all((await self._readiness()).values()))

    @_rpc
    async def ModelReady(self, request: pb.ModelReadyRequest, grpc_context: Context) -> pb.ModelReadyResponse:
        route = self.pipeline.router.route(request.name)  # unknown model: NOT_FOUND
        known = not request.version or request.version in {str(a) for a in route.candidates()}
        return pb.ModelReadyResponse(ready=known and all((await self._readiness()).values()))

    @_rpc
    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             grpc_context: Context) -> pb.ServerMetadataResponse:
        meta = server_metadata()
        return pb.ServerMetadataResponse(name=meta.name, version=meta.version, extensions=meta.extensions)

    @_rpc
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, grpc_context: Context) -> pb.ModelMetadataResponse:
        return to_proto_metadata(model_metadata(request.name, self.pipeline.router.route(request.name)))

    @_rpc
    async def ModelInfer(self, request: pb.ModelInferRequest, grpc_context: Context) -> pb.ModelInferResponse:
        gw = self.pipeline.config.gateway
        headers = _headers(grpc_context)

        base, bad_header = await self._fields.context(headers)
        if not base.adapter_override and request.model_version:
            # model_version may name an adapter too: the rules of x-finserve-adapter apply to it.
            try:
                base.adapter_override = await self._fields.adapter_ref("model_version", request.model_version)
            except InvalidRequest as exc:
                bad_header = bad_header or exc
        try:
            check_api_key(headers.get("authorization", ""), gw.api_key_env)
            if bad_header:
                raise bad_header
            if request.ByteSize() > gw.max_body_bytes:
                raise PayloadTooLarge(f"request message over {gw.max_body_bytes} bytes")
        except FinserveError as exc:
            await audit_rejection(self.pipeline, base, exc, None)  # as REST: the body is not read
            fail(grpc_context, exc, base.request_id)
            return pb.ModelInferResponse()
        try:
            infer = to_infer_request(request)
            infer_id = await self._fields.request_id("id", infer.id)
            chats = [c.model_copy(update={"user": self._fields.user(c.user, "parameters.user")})
                     for c in to_chat_requests(request.model_name, infer)]
        except FinserveError as exc:
            # Refused before the pipeline ran: audited here (guarded), as REST audits its rejections.
            await audit_rejection(self.pipeline, base, exc, audit_body(request))
            fail(grpc_context, exc, base.request_id)
            return pb.ModelInferResponse()
        answers = []
        try:
            for i, chat in enumerate(chats):
                ctx = fork_context(base, f"{base.request_id}-{i}" if len(chats) > 1 else base.request_id)
                answers.append(await self.pipeline.chat(chat, ctx))  # audits every outcome itself
        except Exception as exc:  # noqa: BLE001 - one status for every error
            fail(grpc_context, exc, base.request_id)
            return pb.ModelInferResponse()
        grpc_context.set_trailing_metadata([("x-request-id", base.request_id)])
        return to_proto_response(to_infer_response(request.model_name, infer_id or base.request_id, answers))

    @_rpc
    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest,
                                  grpc_context: Context) -> pb.RepositoryModelLoadResponse:
        return self._no_repository(grpc_context, pb.RepositoryModelLoadResponse)

    @_rpc
    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest,
                                    grpc_context: Context) -> pb.RepositoryModelUnloadResponse:
        return self._no_repository(grpc_context, pb.RepositoryModelUnloadResponse)

    @staticmethod
    def _no_repository(grpc_context: Context, response_type: type) -> Any:
        grpc_context.set_code(grpc.StatusCode.UNIMPLEMENTED)
        grpc_context.set_details("models are not loaded by RPC here: adapters roll out through the routing "
                                 "table (a ModelRollout)")
        return response_type()
