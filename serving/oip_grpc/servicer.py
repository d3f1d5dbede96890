"""The Open Inference Protocol v2 over gRPC, answered by the chat pipeline as REST /v2 is.

One class serves both transports. Ray Serve's gRPC proxy calls the ingress deployment's methods by
RPC name, passing the context as the keyword ``grpc_context`` (so the Gateway deployment inherits
this class); a grpc.aio server (the in-process stack) calls the same methods positionally. Both
contexts offer invocation_metadata, set_code, set_details and set_trailing_metadata: all this uses.

Metadata carries what REST puts in headers (authorization, x-request-id, x-finserve-tenant,
x-finserve-session, x-user-id, x-finserve-adapter), checked by serving/client_fields.py as REST's
headers are, and authorised by serving/access/ as REST is (probes open, every other RPC needs a
credential when auth is on); ``model_version`` may name an adapter NAME@VERSION too. Errors never
escape as exceptions: Ray's proxy would send their traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc

from ..access.ingress import Ingress, Readiness, fork_context
from ..access.policy import rpc_scope
from ..admission import requested_tokens
from ..errors import FinserveError, PayloadTooLarge, map_error
from ..oip import model_metadata, requested_outputs, server_metadata, to_chat_requests, to_infer_response
from ..pipeline import Pipeline
from ..telemetry.request import server_span, trace_headers
from . import grpc_predict_v2_pb2 as pb
from . import grpc_predict_v2_pb2_grpc as pb_grpc
from .codec import audit_body, to_infer_request, to_proto_metadata, to_proto_response
from .status import error_trailers

log = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
# The share of a client's own gRPC deadline the pipeline plans with (see ModelInfer).
_GRPC_DEADLINE_SHARE = 0.9


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
    context.set_trailing_metadata([*error_trailers(m, request_id), *trace_headers().items()])


def _rpc(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Turns any exception into a status and an empty response of the RPC's type."""
    response_type = getattr(pb, SERVICE.methods_by_name[method.__name__].output_type.name)

    @functools.wraps(method)
    async def wrapper(self: InferenceServicer, request: Any, grpc_context: Context) -> Any:
        # A server span per call, child of the client's traceparent metadata (no-op while tracing is off).
        with server_span(f"{SERVICE.full_name}/{method.__name__}", _headers(grpc_context)):
            try:
                # Every RPC but the probes needs a credential when auth is on (ModelInfer also audits it).
                if method.__name__ != "ModelInfer":
                    self._ingress.check(_headers(grpc_context), rpc_scope(method.__name__))
                return await method(self, request, grpc_context)
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                fail(grpc_context, exc)
                return response_type()

    return wrapper


def _headers(context: Context) -> dict[str, str]:
    return {
        key.lower(): value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)
    }


def _peer(context: Context) -> str | None:
    """grpc.aio's peer (``ipv4:1.2.3.4:5678``); Ray's proxy context may offer none."""
    peer = getattr(context, "peer", None)
    try:
        return str(peer()) if callable(peer) else None
    except Exception:  # noqa: BLE001 - an unknown peer shares one per-address budget
        return None


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, pipeline: Pipeline, readiness: Readiness) -> None:
        self.pipeline = pipeline
        self._readiness = readiness
        self._ingress = Ingress(pipeline)
        self._fields = self._ingress.fields

    @_rpc
    async def ServerLive(self, request: pb.ServerLiveRequest, grpc_context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @_rpc
    async def ServerReady(
        self, request: pb.ServerReadyRequest, grpc_context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=all((await self._readiness()).values()))

    @_rpc
    async def ModelReady(self, request: pb.ModelReadyRequest, grpc_context: Context) -> pb.ModelReadyResponse:
        route = self.pipeline.router.route(request.name)  # unknown model: NOT_FOUND
        known = not request.version or request.version in {str(a) for a in route.candidates()}
        return pb.ModelReadyResponse(ready=known and all((await self._readiness()).values()))

    @_rpc
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, grpc_context: Context
    ) -> pb.ServerMetadataResponse:
        meta = server_metadata()
        return pb.ServerMetadataResponse(name=meta.name, version=meta.version, extensions=meta.extensions)

    @_rpc
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, grpc_context: Context
    ) -> pb.ModelMetadataResponse:
        return to_proto_metadata(model_metadata(request.name, self.pipeline.router.route(request.name)))

    @_rpc
    async def ModelInfer(self, request: pb.ModelInferRequest, grpc_context: Context) -> pb.ModelInferResponse:
        gw = self.pipeline.config.gateway
        headers = _headers(grpc_context)

        # model_version may name an adapter too: the rules (and the scope) of x-finserve-adapter apply to it.
        base, refused = await self._ingress.admit(
            headers, body_adapter=("model_version", request.model_version)
        )
        if base.deadline_ms is None:
            # The client's own gRPC deadline, when it set one and no x-finserve-deadline-ms: the pipeline
            # then answers (or falls back) before the client gives up.
            # (Ray Serve's gRPC proxy context has no time_remaining: there the header alone sets it.)
            clock = getattr(grpc_context, "time_remaining", None)
            remaining = clock() if callable(clock) else None
            if remaining is not None and remaining < 10**6:
                # A tenth is kept back for what follows the pipeline's own deadline (the fallback's guard and
                # audit line under load, the reply's way back): an answer the client has given up on is lost.
                base.deadline_ms = max(1, int(remaining * 1000 * _GRPC_DEADLINE_SHARE))
        try:
            if refused:
                raise refused
            if request.ByteSize() > gw.max_body_bytes:
                raise PayloadTooLarge(f"request message over {gw.max_body_bytes} bytes")
        except FinserveError as exc:
            await self._ingress.audit_rejection(base, exc, None)  # as REST: the body is not read
            fail(grpc_context, exc, base.request_id)
            return pb.ModelInferResponse()
        try:
            infer = to_infer_request(request)
            infer_id = await self._fields.request_id("id", infer.id)
            chats = [
                c.model_copy(update={"user": self._fields.user(c.user, "parameters.user")})
                for c in to_chat_requests(request.model_name, infer, gw.max_questions)
            ]
        except FinserveError as exc:
            # Refused before the pipeline ran: audited here (guarded), as REST audits its rejections.
            await self._ingress.audit_rejection(base, exc, audit_body(request))
            fail(grpc_context, exc, base.request_id)
            return pb.ModelInferResponse()
        try:
            limits = await self.pipeline.admission.admit(
                base.principal,
                _peer(grpc_context),
                base.tenant,
                len(chats),
                sum(requested_tokens(c, gw.max_tokens_default, gw.max_tokens_limit) for c in chats),
            )
        except FinserveError as exc:  # RateLimited: RESOURCE_EXHAUSTED, audited
            await self._ingress.audit_rejection(base, exc, None)
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
        grpc_context.set_trailing_metadata(
            [("x-request-id", base.request_id), *limits.items(), *trace_headers().items()]
        )
        names, _ = requested_outputs(infer)  # binary is REST's notion: gRPC answers raw when asked raw
        response = to_infer_response(request.model_name, infer_id or base.request_id, answers, names)
        return to_proto_response(response, raw=bool(request.raw_input_contents))

    @_rpc
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, grpc_context: Context
    ) -> pb.RepositoryModelLoadResponse:
        return self._no_repository(grpc_context, pb.RepositoryModelLoadResponse)

    @_rpc
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, grpc_context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        return self._no_repository(grpc_context, pb.RepositoryModelUnloadResponse)

    @staticmethod
    def _no_repository(grpc_context: Context, response_type: type) -> Any:
        grpc_context.set_code(grpc.StatusCode.UNIMPLEMENTED)
        grpc_context.set_details(
            "models are not loaded by RPC here: adapters roll out through the routing table (a ModelRollout)"
        )
        return response_type()
