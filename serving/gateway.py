"""The HTTP front door: OpenAI-compatible chat completions, health, readiness and metrics.

Only transport lives here: body limits, JSON and schema validation, headers, SSE framing and the
error envelope. Everything else is the pipeline's. Every rejected request is audited too. What the
gRPC endpoint (oip_grpc/) shares with this one (credential -> principal, client fields -> context,
the audit of a refusal) lives in serving/access/: a POST endpoint starts with ``ingress.admit``; reads
(GET) are closed by access.http.ReadAuthMiddleware when auth is on, health and readiness excepted.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from . import oip_binary
from .access.http import ReadAuthMiddleware
from .access.ingress import Ingress, Readiness, fork_context, validation_message
from .admission import requested_tokens
from .drain.state import DrainState, InFlightMiddleware
from .errors import AuditUnavailable, FinserveError, InvalidRequest, ModelNotFound, PayloadTooLarge, map_error
from .exposure import docs_options
from .oip import (
    check_version,
    model_metadata,
    parse_infer_request,
    requested_outputs,
    server_metadata,
    to_chat_requests,
    to_infer_response,
)
from .openai_compat.embeddings import embedding_model
from .openai_compat.routes import GatewayHooks, add_openai_routes
from .openai_compat.rules import check_chat_request
from .pipeline import Pipeline, RequestContext
from .schemas import ChatCompletion, ChatCompletionRequest, ModelCard, ModelList
from .telemetry.http import instrument_api

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

__all__ = ["Readiness", "create_api", "parse_json", "validation_message"]


def _error_response(exc: BaseException, request_id: str, *, oip: bool = False) -> JSONResponse:
    """OpenAI's error envelope; with ``oip`` the Open Inference Protocol's (``error`` is the message string,
    as KServe and Triton clients read it), the same facts beside it."""
    m = map_error(exc)
    if m.status >= 500 and m.code == "internal_error":
        log.exception("request %s failed", request_id, exc_info=exc)
    headers = {"x-request-id": request_id}
    if m.retry_after is not None:
        headers["Retry-After"] = str(m.retry_after)
    if m.www_authenticate is not None:
        headers["WWW-Authenticate"] = m.www_authenticate
    headers.update(getattr(exc, "headers", None) or {})  # RateLimited: the x-ratelimit-* headers
    facts = {"type": m.code, "code": m.code, "param": m.param, "request_id": request_id}
    body = {"error": m.message, **facts} if oip else {"error": {"message": m.message, **facts}}
    return JSONResponse(body, status_code=m.status, headers=headers)


def _oip_error_response(exc: BaseException, request_id: str) -> JSONResponse:
    return _error_response(exc, request_id, oip=True)


def answer_headers(request_id: str, completion: ChatCompletion) -> dict[str, str]:
    """Response headers of an answer: its id, and whether it was degraded and which provider gave it
    (both values come from the config or a fixed set, never from the request)."""
    headers = {"x-request-id": request_id}
    if completion.finserve.degraded:
        headers["x-finserve-degraded"] = completion.finserve.degraded
    if completion.finserve.provider:
        headers["x-finserve-provider"] = completion.finserve.provider
    return headers


def parse_json(raw: bytes) -> object:
    """The request body as JSON; anything a client can send that json cannot take is InvalidRequest."""
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc.msg}") from None
    except UnicodeDecodeError:
        raise InvalidRequest("body is not valid JSON: not UTF-8") from None
    except RecursionError:
        raise InvalidRequest("body is not valid JSON: nested too deeply") from None
    except ValueError:  # e.g. an integer of more digits than Python converts (over 4,300)
        raise InvalidRequest("body is not valid JSON: a number is too long") from None
    where = _lone_surrogate(body)
    if where is not None:
        raise InvalidRequest(
            "text must be valid Unicode: a lone surrogate escape (\\ud800-\\udfff) is not",
            param=where or None,
        )
    return body


def _lone_surrogate(value: object, where: str = "") -> str | None:
    """Path (a.b.0) of the first string holding a lone UTF-16 surrogate, or None; none can be stored
    or sent back as UTF-8. Depth is bounded by the JSON parser, which already refused deeper bodies."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where
        return None
    items: Iterable[tuple[object, object]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        path = f"{where}.{key}" if where else str(key)
        if isinstance(key, str) and _lone_surrogate(key) is not None:
            return where
        found = _lone_surrogate(item, path)
        if found is not None:
            return found
    return None


def create_api(pipeline: Pipeline, readiness: Readiness, drain: DrainState | None = None) -> FastAPI:
    """The FastAPI app for one pipeline (in-process or inside the Ray Serve gateway replica). With ``drain`` (the
    Gateway replica's), requests are counted for the shutdown's drain and the probes say when it drains;
    ``readiness`` is then already gated by it (DrainState.gate)."""
    gw = pipeline.config.gateway
    ingress = Ingress(pipeline)
    fields = ingress.fields
    api = FastAPI(
        title="finserve",
        version=importlib.metadata.version("finserve"),
        **docs_options(pipeline.config.exposure),
    )
    api.add_middleware(ReadAuthMiddleware, authenticator=ingress.auth)
    instrument_api(api)  # logs per FINSERVE_LOG_FORMAT; with OTEL_* set, a server span per request
    if drain is not None:  # outermost: a request counts from its first byte in to its last byte out
        api.add_middleware(InFlightMiddleware, state=drain)

    def draining() -> dict[str, bool]:
        return {"draining": True} if drain is not None and drain.draining else {}

    async def reject(
        ctx: RequestContext, exc: BaseException, raw: bytes | None, *, oip: bool = False
    ) -> JSONResponse:
        # Audit the rejection with the body guarded: nothing is lost, nothing leaks. No line, no answer.
        try:
            await ingress.audit_rejection(ctx, exc, raw.decode("utf-8", errors="replace") if raw else None)
        except AuditUnavailable as failed:
            return _error_response(failed, ctx.request_id, oip=oip)
        return _error_response(exc, ctx.request_id, oip=oip)

    async def intake(
        request: Request,
        schema: type[M],
        check: Callable[[M], None] | None = None,
        tokens: Callable[[M], int] | None = None,
    ) -> tuple[RequestContext, M | None, Response | None]:
        """What every POST endpoint does before the pipeline: the caller's context and credential, the body
        limit, JSON and ``schema`` (then ``check``), the end-user id pseudonymised, and the rate limits charged
        ``tokens(body)``. A refusal is audited (with the guarded body once read) and answered."""
        ctx, refused = await ingress.admit(request.headers)
        try:
            if refused:
                raise refused
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > gw.max_body_bytes:
                raise PayloadTooLarge(f"request body over {gw.max_body_bytes} bytes")
            raw = await request.body()
            if len(raw) > gw.max_body_bytes:
                raise PayloadTooLarge(f"request body over {gw.max_body_bytes} bytes")
        except Exception as exc:  # noqa: BLE001 - FinserveError or anything else: audited, one envelope
            return ctx, None, await reject(ctx, exc, None)
        try:
            body = schema.model_validate(parse_json(raw))
            user = getattr(body, "user", None)
            if user is not None:  # an end-user id (often an email): only its pseudonym goes on
                body = body.model_copy(update={"user": fields.user(user)})
            if check is not None:
                check(body)
            charge = (
                tokens(body) if tokens is not None else 0
            )  # over max_tokens_limit: a 400, nothing charged
        except ValidationError as exc:
            msg, field = validation_message(exc)
            return ctx, None, await reject(ctx, InvalidRequest(msg, param=field), raw)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the request still leaves its line
            return ctx, None, await reject(ctx, exc, raw)
        try:
            ctx.limits = await pipeline.admission.admit(
                ctx.principal, _address(request), ctx.tenant, 1, charge
            )
        except FinserveError as exc:  # RateLimited: audited, the body is not needed to say so
            return ctx, None, await reject(ctx, exc, None)
        return ctx, body, None

    @api.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        # check_chat_request: fields finserve cannot honour (tools, n > 1, ...) are a 400 naming them.
        ctx, req, refused = await intake(
            request,
            ChatCompletionRequest,
            check_chat_request,
            lambda r: requested_tokens(r, gw.max_tokens_default, gw.max_tokens_limit),
        )
        if refused is not None or req is None:
            return refused  # type: ignore[return-value]
        limits = ctx.limits
        try:
            if req.stream:
                chunks = await pipeline.chat_stream(req, ctx)
                return StreamingResponse(
                    _sse(chunks, ctx.request_id),
                    media_type="text/event-stream",
                    headers={"x-request-id": ctx.request_id, "Cache-Control": "no-cache", **limits},
                )
            completion = await pipeline.chat(req, ctx)
        except Exception as exc:  # noqa: BLE001 - every error becomes the one envelope
            return _error_response(exc, ctx.request_id)
        return JSONResponse(
            completion.model_dump(mode="json"),
            headers={**answer_headers(ctx.request_id, completion), **limits},
        )

    add_openai_routes(
        api,
        pipeline,
        GatewayHooks(
            intake=intake, reject=reject, error_response=_error_response, sse=_sse, fork_context=fork_context
        ),
    )

    # ---- KServe Open Inference Protocol v2 (REST) ----

    @api.get("/v2/health/live")
    async def v2_live() -> dict[str, bool]:
        return {"live": True}

    @api.get("/v2/health/ready")
    async def v2_ready() -> JSONResponse:
        ok = all((await readiness()).values())
        return JSONResponse({"ready": ok, **draining()}, status_code=200 if ok else 503)

    @api.get("/v2")
    async def v2_server() -> JSONResponse:
        return JSONResponse(server_metadata().model_dump(mode="json"))

    @api.get("/v2/models/{model}")
    @api.get("/v2/models/{model}/versions/{version}")
    async def v2_model(model: str, version: str | None = None) -> JSONResponse:
        try:
            meta = model_metadata(model, pipeline.router.route(model), version)
        except FinserveError as exc:
            return _oip_error_response(exc, "metadata")
        return JSONResponse(meta.model_dump(mode="json"))

    @api.get("/v2/models/{model}/ready")
    @api.get("/v2/models/{model}/versions/{version}/ready")
    async def v2_model_ready(model: str, version: str | None = None) -> JSONResponse:
        try:
            check_version(pipeline.router.route(model), version)
        except FinserveError as exc:
            return _oip_error_response(exc, "ready")
        ok = all((await readiness()).values())  # the same readiness as /readyz and ModelReady over gRPC
        return JSONResponse({"name": model, "ready": ok}, status_code=200 if ok else 503)

    @api.post("/v2/models/{model}/infer")
    @api.post("/v2/models/{model}/versions/{version}/infer")
    async def v2_infer(model: str, request: Request, version: str | None = None) -> Response:
        # A version in the path names an adapter, as gRPC's model_version: x-finserve-adapter's rules (and scope).
        base, refused = await ingress.admit(request.headers, body_adapter=("model_version", version or ""))
        try:
            if refused:
                raise refused
            raw = await request.body()
            if len(raw) > gw.max_body_bytes:
                raise PayloadTooLarge(f"request body over {gw.max_body_bytes} bytes")
        except FinserveError as exc:
            return await reject(base, exc, None, oip=True)
        try:
            infer = parse_infer_request(raw, request.headers.get(oip_binary.HEADER))
            infer_id = await fields.request_id("id", infer.id)
            chats = [
                c.model_copy(update={"user": fields.user(c.user, "parameters.user")})
                for c in to_chat_requests(model, infer, gw.max_questions)
            ]
        except ValidationError as exc:
            msg, field = validation_message(exc)
            return await reject(base, InvalidRequest(msg, param=field), raw, oip=True)
        except Exception as exc:  # noqa: BLE001 - FinserveError or anything else: audited, one envelope
            return await reject(base, exc, raw, oip=True)
        try:
            limits = await pipeline.admission.admit(
                base.principal,
                _address(request),
                base.tenant,
                len(chats),
                sum(requested_tokens(c, gw.max_tokens_default, gw.max_tokens_limit) for c in chats),
            )
        except FinserveError as exc:
            return await reject(base, exc, None, oip=True)
        answers = []
        try:
            for i, chat in enumerate(chats):
                ctx = fork_context(base, f"{base.request_id}-{i}" if len(chats) > 1 else base.request_id)
                answers.append(await pipeline.chat(chat, ctx))
        except Exception as exc:  # noqa: BLE001 - one envelope for every error
            return _oip_error_response(exc, base.request_id)
        names, binary = requested_outputs(infer)
        out = to_infer_response(model, infer_id or base.request_id, answers, names)
        headers = {"x-request-id": base.request_id, **limits}
        dumped = out.model_dump(mode="json")
        if not binary:
            return JSONResponse(dumped, headers=headers)
        body, json_length = oip_binary.encode_response(dumped, binary)
        # Outputs asked for in binary: JSON, then their bytes (Triton's and KServe's clients read both forms).
        headers["Inference-Header-Content-Length"] = str(json_length)
        return Response(body, media_type="application/octet-stream", headers=headers)

    @api.get("/v1/models")
    async def models() -> ModelList:
        routes = pipeline.router.models()
        cards = [ModelCard(id=name, root=route.base_model) for name, route in sorted(routes.items())]
        return ModelList(
            data=[*cards, ModelCard(id=embedding_model(pipeline.config.retrieval))]
        )  # /v1/embeddings

    @api.get("/v1/models/{model}")
    async def model(model: str) -> Response:
        # What the OpenAI SDK's models.retrieve() asks; an unknown name is a 404 that does not echo it.
        routes = pipeline.router.models()
        embedder = embedding_model(pipeline.config.retrieval)
        if model in routes:
            return JSONResponse(ModelCard(id=model, root=routes[model].base_model).model_dump(mode="json"))
        if model == embedder:
            return JSONResponse(ModelCard(id=embedder).model_dump(mode="json"))
        return _error_response(ModelNotFound("no such model; see GET /v1/models", param="model"), "models")

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz() -> JSONResponse:
        stages = await readiness()
        ok = all(stages.values())
        # While draining: 503 with draining: true, so a load balancer stops sending before the listener goes.
        return JSONResponse({"ready": ok, **draining(), "stages": stages}, status_code=200 if ok else 503)

    @api.get("/metrics")
    async def metrics() -> Response:
        # The admin scope (auth on) is checked by the access middleware before this runs.
        if not pipeline.config.exposure.metrics_on_api_port:
            return JSONResponse(
                {"detail": "Not Found"}, status_code=404
            )  # its own port (serving/exposure.py)
        return Response(generate_latest(pipeline.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return api


def _address(request: Request) -> str | None:
    """The peer's address: whom an unauthenticated request's per-principal limit counts."""
    return request.client.host if request.client else None


async def _sse(chunks: AsyncIterator[dict], request_id: str) -> AsyncIterator[bytes]:
    """SSE frames; ``[DONE]`` only after a complete answer. A failed stream ends with an error event and
    no ``[DONE]``, so no client mistakes a cut-off answer for a whole one. Closing this (the client
    left) closes the pipeline's generator at once, which writes the line of an abandoned answer."""
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        try:
            async for chunk in chunks:
                yield f"data: {json.dumps(chunk)}\n\n".encode()
        except Exception as exc:  # noqa: BLE001 - headers are gone: report in-band, OpenAI style
            m = map_error(exc)
            if m.code == "internal_error":
                log.exception("stream %s failed", request_id, exc_info=exc)
            error = {"message": m.message, "type": m.code, "code": m.code, "request_id": request_id}
            yield f"data: {json.dumps({'error': error})}\n\n".encode()
            return
    yield b"data: [DONE]\n\n"
