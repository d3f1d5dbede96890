"""The HTTP front door: OpenAI-compatible chat completions, health, readiness and metrics.

Only transport lives here: body limits, JSON and schema validation, auth, headers, SSE framing
and the error envelope. Everything else is the pipeline's. Every rejected request is audited too.
The module-level helpers (the client-field check, API key, rejection audit) are shared with the
gRPC endpoint (oip_grpc/), whose metadata carries the same headers. Every client-supplied identifier
goes through serving/client_fields.py before anything records it.
"""

from __future__ import annotations

import contextlib
import hmac
import importlib.metadata
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from .audit.record import bounded
from .client_fields import ClientFields
from .errors import AuditUnavailable, FinserveError, InvalidRequest, PayloadTooLarge, Unauthorized, map_error
from .oip import InferRequest, model_metadata, to_chat_requests, to_infer_response
from .pipeline import Pipeline, RequestContext
from .schemas import ChatCompletionRequest, ModelCard, ModelList

log = logging.getLogger(__name__)

Readiness = Callable[[], Awaitable[dict[str, bool]]]
REJECTED_BODY_CHARS = 4096  # how much of a refused request's body its audit line keeps


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
    """The first problem as ``field: what is wrong``, from pydantic's message only: never its
    ``input_value`` and never a key the client made up (an unknown field is named by its parent)."""
    first = err.errors()[0]
    loc = [str(p) for p in first.get("loc", ())]
    msg = first["msg"]
    if first.get("type") == "extra_forbidden":
        loc, msg = loc[:-1], "unknown field"
    field = ".".join(loc) or None
    return (f"{field}: {msg}" if field else msg), field


def client_fields(pipeline: Pipeline) -> ClientFields:
    """The ingress check of headers and ids, shared by REST and gRPC."""
    return ClientFields(pipeline.guard, pipeline.config.gateway.default_tenant)


def fork_context(base: RequestContext, request_id: str) -> RequestContext:
    """A fresh context for one question of a multi-question OIP request, with the same checked caller facts."""
    return RequestContext(request_id=request_id, tenant=base.tenant, sticky_key=base.sticky_key,
                          adapter_override=base.adapter_override)


def check_api_key(authorization: str, key_env: str) -> None:
    """No key configured: open. Otherwise ``Bearer <key>``, compared in constant time."""
    key = os.environ.get(key_env)
    if not key:
        return
    if not (authorization.startswith("Bearer ") and hmac.compare_digest(authorization[7:].encode(), key.encode())):
        raise Unauthorized("missing or wrong API key (Authorization: Bearer ...)")


async def audit_rejection(pipeline: Pipeline, ctx: RequestContext, exc: BaseException, body: str | None) -> None:
    """Audit a request refused before the pipeline ran, its body guarded first (it may hold PII).

    Raises AuditUnavailable when the line cannot be written (the caller answers 503 instead)."""
    if body:
        try:
            # Bounded first: a refused body can be anything up to the body limit, and the guard's
            # tokenizer is slow on pathological text (60,000 brackets take minutes).
            [masked] = await pipeline.guard.scan_many([bounded(body, REJECTED_BODY_CHARS)])
            ctx.masked_input = masked.text
        except Exception:  # noqa: BLE001 - unguarded text must not reach the log: record that it was withheld
            log.warning("request %s: body not guarded, left out of its audit line", ctx.request_id)
            ctx.masked_input = "<body withheld: the guard failed on it>"
    mapped = map_error(exc)
    await pipeline.finish(ctx, mapped.status, mapped.code)


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
        raise InvalidRequest("text must be valid Unicode: a lone surrogate escape (\\ud800-\\udfff) is not",
                             param=where or None)
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


def create_api(pipeline: Pipeline, readiness: Readiness) -> FastAPI:
    """The FastAPI app for one pipeline (in-process or inside the Ray Serve gateway replica)."""
    gw = pipeline.config.gateway
    fields = client_fields(pipeline)
    api = FastAPI(title="finserve", version=importlib.metadata.version("finserve"), docs_url="/docs", redoc_url=None)

    def check_auth(request: Request) -> None:
        check_api_key(request.headers.get("authorization", ""), gw.api_key_env)

    async def reject(ctx: RequestContext, exc: BaseException, raw: bytes | None) -> JSONResponse:
        # Audit the rejection with the body guarded: nothing is lost, nothing leaks. No line, no answer.
        try:
            await audit_rejection(pipeline, ctx, exc, raw.decode("utf-8", errors="replace") if raw else None)
        except AuditUnavailable as failed:
            return _error_response(failed, ctx.request_id)
        return _error_response(exc, ctx.request_id)

    @api.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        ctx, bad_header = await fields.context(request.headers)
        try:
            check_auth(request)
            if bad_header:
                raise bad_header
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > gw.max_body_bytes:
                raise PayloadTooLarge(f"request body over {gw.max_body_bytes} bytes")
            raw = await request.body()
            if len(raw) > gw.max_body_bytes:
                raise PayloadTooLarge(f"request body over {gw.max_body_bytes} bytes")
        except Exception as exc:  # noqa: BLE001 - FinserveError or anything else: audited, one envelope
            return await reject(ctx, exc, None)
        try:
            req = ChatCompletionRequest.model_validate(parse_json(raw))
            req.user = fields.user(req.user)  # an end-user id (often an email): only its pseudonym goes on
        except FinserveError as exc:
            return await reject(ctx, exc, raw)
        except ValidationError as exc:
            msg, field = validation_message(exc)
            return await reject(ctx, InvalidRequest(msg, param=field), raw)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the request still leaves its line
            return await reject(ctx, exc, raw)

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
        base, bad_header = await fields.context(request.headers)
        try:
            check_auth(request)
            if bad_header:
                raise bad_header
            raw = await request.body()
            if len(raw) > gw.max_body_bytes:
                raise PayloadTooLarge(f"request body over {gw.max_body_bytes} bytes")
        except FinserveError as exc:
            return await reject(base, exc, None)
        try:
            infer = InferRequest.model_validate_json(raw)
            infer_id = await fields.request_id("id", infer.id)
            chats = [c.model_copy(update={"user": fields.user(c.user, "parameters.user")})
                     for c in to_chat_requests(model, infer)]
        except ValidationError as exc:
            msg, field = validation_message(exc)
            return await reject(base, InvalidRequest(msg, param=field), raw)
        except Exception as exc:  # noqa: BLE001 - FinserveError or anything else: audited, one envelope
            return await reject(base, exc, raw)
        answers = []
        try:
            for i, chat in enumerate(chats):
                ctx = fork_context(base, f"{base.request_id}-{i}" if len(chats) > 1 else base.request_id)
                answers.append(await pipeline.chat(chat, ctx))
        except Exception as exc:  # noqa: BLE001 - one envelope for every error
            return _error_response(exc, base.request_id)
        out = to_infer_response(model, infer_id or base.request_id, answers)
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
