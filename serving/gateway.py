"""The HTTP front door: OpenAI-compatible chat completions, health, readiness and metrics.

Only transport lives here: body limits, JSON and schema validation, auth, headers, SSE framing
and the error envelope. Everything else is the pipeline's. Every rejected request is audited too.
The module-level helpers (context from headers, API key, rejection audit) are shared with the
gRPC endpoint (oip_grpc/), whose metadata carries the same headers.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from .errors import FinserveError, InvalidRequest, PayloadTooLarge, Unauthorized, map_error
from .oip import InferRequest, model_metadata, to_chat_requests, to_infer_response
from .pipeline import Pipeline, RequestContext
from .schemas import ChatCompletionRequest, ModelCard, ModelList

log = logging.getLogger(__name__)

Readiness = Callable[[], Awaitable[dict[str, bool]]]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _error_response(exc: BaseException, request_id: str) -> JSONResponse:
    m = map_error(exc)
    if m.status >= 500 and m.code == "internal_error":
        log.exception("request %s failed", request_id, exc_info=exc)
    headers = {"x-request-id": request_id}
    if m.retry_after is not None:
        headers["Retry-After"] = str(m.retry_after)
    body = {"error": {"message": m.message, "type": m.code, "code": m.code, "param": m.param,
                      "request_id": request_id}}
    return JSONResponse(body, status_code=m.status, headers=headers)


def validation_message(err: ValidationError) -> tuple[str, str | None]:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or None
    return (f"{field}: {first['msg']}" if field else first["msg"]), field


def request_context(headers: Mapping[str, str], default_tenant: str) -> RequestContext:
    """Per-request facts from HTTP headers or gRPC metadata (lower-case keys for gRPC)."""
    rid = headers.get("x-request-id", "")
    ctx = RequestContext(
        tenant=headers.get("x-finserve-tenant", default_tenant)[:64],
        sticky_key=headers.get("x-finserve-session") or headers.get("x-user-id"),
        adapter_override=headers.get("x-finserve-adapter"),
    )
    if _REQUEST_ID.match(rid):
        ctx.request_id = rid
    return ctx


def check_api_key(authorization: str, key_env: str) -> None:
    """No key configured: open. Otherwise ``Bearer <key>``, compared in constant time."""
    key = os.environ.get(key_env)
    if not key:
        return
    if not (authorization.startswith("Bearer ") and hmac.compare_digest(authorization[7:].encode(), key.encode())):
        raise Unauthorized("missing or wrong API key (Authorization: Bearer ...)")


async def audit_rejection(pipeline: Pipeline, ctx: RequestContext, exc: FinserveError, body: str | None) -> None:
    """Audit a request refused before the pipeline ran, its body guarded first (it may hold PII)."""
    if body:
        [masked] = await pipeline.guard.scan_many([body])
        ctx.masked_input = masked.text
    await pipeline.finish(ctx, map_error(exc).status, exc.code)


def create_api(pipeline: Pipeline, readiness: Readiness) -> FastAPI:
    """The FastAPI app for one pipeline (in-process or inside the Ray Serve gateway replica)."""
    gw = pipeline.config.gateway
    api = FastAPI(title="finserve", version="0.1.0", docs_url="/docs", redoc_url=None)

    def check_auth(request: Request) -> None:
        check_api_key(request.headers.get("authorization", ""), gw.api_key_env)

    async def reject(ctx: RequestContext, exc: FinserveError, raw: bytes | None) -> JSONResponse:
        # Audit the rejection with the body guarded: nothing is lost, nothing leaks.
        await audit_rejection(pipeline, ctx, exc, raw.decode("utf-8", errors="replace") if raw else None)
        return _error_response(exc, ctx.request_id)

    @api.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        ctx = request_context(request.headers, gw.default_tenant)
        try:
            check_auth(request)
            declared = int(request.headers.get("content-length") or 0)
            if declared > gw.max_body_bytes:
                raise PayloadTooLarge(f"request body over {gw.max_body_bytes} bytes")
            raw = await request.body()
            if len(raw) > gw.max_body_bytes:
                raise PayloadTooLarge(f"request body over {gw.max_body_bytes} bytes")
        except FinserveError as exc:
            return await reject(ctx, exc, None)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return await reject(ctx, InvalidRequest(f"body is not valid JSON: {exc.msg if hasattr(exc, 'msg') else exc}"), raw)
        try:
            req = ChatCompletionRequest.model_validate(body)
        except ValidationError as exc:
            msg, field = validation_message(exc)
            return await reject(ctx, InvalidRequest(msg, param=field), raw)

        try:
            if req.stream:
                chunks = await pipeline.chat_stream(req, ctx)
                return StreamingResponse(_sse(chunks, ctx.request_id), media_type="text/event-stream",
                                         headers={"x-request-id": ctx.request_id, "Cache-Control": "no-cache"})
            completion = await pipeline.chat(req, ctx)
        except Exception as exc:  # noqa: BLE001 - every error becomes the one envelope
            return _error_response(exc, ctx.request_id)
        return JSONResponse(completion.model_dump(mode="json"), headers={"x-request-id": ctx.request_id})

    # ---- KServe Open Inference Protocol v2 (REST) ----

    @api.get("/v2/health/live")
    async def v2_live() -> dict[str, bool]:
        return {"live": True}

    @api.get("/v2/health/ready")
    async def v2_ready() -> JSONResponse:
        ok = all((await readiness()).values())
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @api.get("/v2/models/{model}")
    async def v2_model(model: str) -> JSONResponse:
        try:
            route = pipeline.router.route(model)
        except FinserveError as exc:
            return _error_response(exc, "metadata")
        return JSONResponse(model_metadata(model, route).model_dump(mode="json"))

    @api.post("/v2/models/{model}/infer")
    async def v2_infer(model: str, request: Request) -> Response:
        base = request_context(request.headers, gw.default_tenant)
        try:
            check_auth(request)
            raw = await request.body()
            if len(raw) > gw.max_body_bytes:
                raise PayloadTooLarge(f"request body over {gw.max_body_bytes} bytes")
        except FinserveError as exc:
            return await reject(base, exc, None)
        try:
            infer = InferRequest.model_validate_json(raw)
            chats = to_chat_requests(model, infer)
        except ValidationError as exc:
            msg, field = validation_message(exc)
            return await reject(base, InvalidRequest(msg, param=field), raw)
        except FinserveError as exc:
            return await reject(base, exc, raw)
        answers = []
        try:
            for i, chat in enumerate(chats):
                ctx = request_context(request.headers, gw.default_tenant)
                ctx.request_id = f"{base.request_id}-{i}" if len(chats) > 1 else base.request_id
                answers.append(await pipeline.chat(chat, ctx))
        except Exception as exc:  # noqa: BLE001 - one envelope for every error
            return _error_response(exc, base.request_id)
        out = to_infer_response(model, infer.id or base.request_id, answers)
        return JSONResponse(out.model_dump(mode="json"), headers={"x-request-id": base.request_id})

    @api.get("/v1/models")
    async def models() -> ModelList:
        routes = pipeline.router.models()
        return ModelList(data=[ModelCard(id=name, root=route.base_model) for name, route in sorted(routes.items())])

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz() -> JSONResponse:
        stages = await readiness()
        ok = all(stages.values())
        return JSONResponse({"ready": ok, "stages": stages}, status_code=200 if ok else 503)

    @api.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(pipeline.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return api


async def _sse(chunks: AsyncIterator[dict], request_id: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n".encode()
    except Exception as exc:  # noqa: BLE001 - headers are gone: report in-band, OpenAI style
        m = map_error(exc)
        if m.code == "internal_error":
            log.exception("stream %s failed", request_id, exc_info=exc)
        yield f"data: {json.dumps({'error': {'message': m.message, 'type': m.code, 'code': m.code}})}\n\n".encode()
    yield b"data: [DONE]\n\n"
