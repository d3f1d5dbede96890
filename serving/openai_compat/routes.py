"""The HTTP endpoints /v1/completions and /v1/embeddings, added to the gateway's app.

Transport only, as in gateway.py: each endpoint takes the gateway's own helpers (request context from
the headers, auth, the audited rejection, the error envelope, SSE framing) through ``GatewayHooks``,
one call each, so a change to how the gateway authenticates or audits applies here unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from ..client_fields import ClientFields
from ..errors import FinserveError, InvalidRequest, PayloadTooLarge
from ..pipeline import Pipeline, RequestContext
from .completions import (
    CompletionRequest,
    MappedStream,
    check_completion_request,
    to_chat_request,
    to_completion,
    to_completion_chunk,
)
from .embeddings import EmbeddingRequest, create_embeddings

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class GatewayHooks:
    """What the gateway's chat endpoint uses, handed over so these endpoints use the very same."""

    fields: ClientFields
    # The caller's context and the first reason to refuse it (serving/access: credential, tenant, headers).
    admit: Callable[[Mapping[str, str]], Awaitable[tuple[RequestContext, FinserveError | None]]]
    # Rate limits (serving/admission): (ctx, request, requests, tokens) -> the x-ratelimit-* headers.
    limit: Callable[[RequestContext, Request, int, int], Awaitable[dict[str, str]]]
    reject: Callable[[RequestContext, BaseException, bytes | None], Awaitable[Response]]
    error_response: Callable[[BaseException, str], Response]
    sse: Callable[[AsyncIterator[dict], str], AsyncIterator[bytes]]
    parse_json: Callable[[bytes], object]
    validation_message: Callable[[ValidationError], tuple[str, str | None]]
    fork_context: Callable[[RequestContext, str], RequestContext]


def add_openai_routes(api: FastAPI, pipeline: Pipeline, hooks: GatewayHooks) -> None:
    gw = pipeline.config.gateway

    async def intake(request: Request, schema: type[M]) -> tuple[RequestContext, M | None, Response | None]:
        """Context, auth, body limit, JSON and schema, as chat does; a refusal is audited and answered."""
        ctx, refused = await hooks.admit(request.headers)
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
            return ctx, None, await hooks.reject(ctx, exc, None)
        try:
            body = schema.model_validate(hooks.parse_json(raw))
            user = getattr(body, "user", None)
            if user is not None:
                body = body.model_copy(update={"user": hooks.fields.user(user)})  # only its pseudonym goes on
        except ValidationError as exc:
            msg, field = hooks.validation_message(exc)
            return ctx, None, await hooks.reject(ctx, InvalidRequest(msg, param=field), raw)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the request still leaves its line
            return ctx, None, await hooks.reject(ctx, exc, raw)
        try:
            tokens = getattr(body, "max_tokens", None) or (gw.max_tokens_default if hasattr(body, "max_tokens") else 0)
            ctx.limits = await hooks.limit(ctx, request, 1, tokens)
        except FinserveError as exc:  # RateLimited: audited, answered with its headers
            return ctx, None, await hooks.reject(ctx, exc, None)
        return ctx, body, None

    def ok(body: BaseModel, ctx: RequestContext, headers: Mapping[str, str] | None = None) -> JSONResponse:
        return JSONResponse(body.model_dump(mode="json"),
                            headers={"x-request-id": ctx.request_id, **ctx.limits, **(headers or {})})

    @api.post("/v1/completions")
    async def completions(request: Request) -> Response:
        ctx, req, refused = await intake(request, CompletionRequest)
        if refused is not None or req is None:
            return refused  # type: ignore[return-value]
        try:
            prompts = check_completion_request(req, gw.max_messages)
        except FinserveError as exc:
            return await hooks.reject(ctx, exc, (await request.body()))
        try:
            if req.stream:
                chunks = await pipeline.chat_stream(to_chat_request(req, prompts[0]), ctx)
                return StreamingResponse(hooks.sse(MappedStream(chunks, to_completion_chunk), ctx.request_id),
                                         media_type="text/event-stream",
                                         headers={"x-request-id": ctx.request_id, "Cache-Control": "no-cache"})
            answers = []
            for i, prompt in enumerate(prompts):
                one = hooks.fork_context(ctx, f"{ctx.request_id}-{i}") if len(prompts) > 1 else ctx
                answers.append(await pipeline.chat(to_chat_request(req, prompt), one))  # audits each outcome
        except Exception as exc:  # noqa: BLE001 - every error becomes the one envelope
            return hooks.error_response(exc, ctx.request_id)
        return ok(to_completion(ctx.request_id, req.model, answers), ctx)

    @api.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        ctx, req, refused = await intake(request, EmbeddingRequest)
        if refused is not None or req is None:
            return refused  # type: ignore[return-value]
        try:
            out = await create_embeddings(pipeline, req, ctx)  # audits every outcome itself
        except Exception as exc:  # noqa: BLE001 - every error becomes the one envelope
            return hooks.error_response(exc, ctx.request_id)
        return ok(out, ctx, {"x-finserve-masked": "true"})
