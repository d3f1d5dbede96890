"""The HTTP endpoints /v1/completions, /v1/responses and /v1/embeddings, added to the gateway's app.

Transport only, as in gateway.py: each endpoint takes the gateway's own helpers (request context from
the headers, auth, the audited rejection, the error envelope, SSE framing) through ``GatewayHooks``,
one call each, so a change to how the gateway authenticates or audits applies here unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from ..errors import FinserveError
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
from .responses import ResponseEvents, ResponsesRequest, check_responses_request, to_response
from .responses import to_chat_request as responses_to_chat

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class GatewayHooks:
    """What the gateway's chat endpoint uses, handed over so these endpoints use the very same."""

    # The gateway's intake (context, credential, body limit, schema, pseudonymised user, rate limits):
    # (request, schema, check, tokens) -> (ctx, body, refusal already answered).
    intake: Callable[..., Awaitable[tuple[RequestContext, Any, Response | None]]]
    reject: Callable[[RequestContext, BaseException, bytes | None], Awaitable[Response]]
    error_response: Callable[[BaseException, str], Response]
    sse: Callable[[AsyncIterator[dict], str], AsyncIterator[bytes]]
    fork_context: Callable[[RequestContext, str], RequestContext]


def add_openai_routes(api: FastAPI, pipeline: Pipeline, hooks: GatewayHooks) -> None:
    gw = pipeline.config.gateway

    def _tokens(body: BaseModel) -> int:
        """Charged up front: a completion's max_tokens (or the default); embeddings generate none."""
        if not hasattr(body, "max_tokens"):
            return 0
        return body.max_tokens or gw.max_tokens_default

    async def intake(request: Request, schema: type[M]) -> tuple[RequestContext, M | None, Response | None]:
        return await hooks.intake(request, schema, None, _tokens)

    def ok(body: BaseModel, ctx: RequestContext, headers: Mapping[str, str] | None = None) -> JSONResponse:
        return JSONResponse(
            body.model_dump(mode="json"),
            headers={"x-request-id": ctx.request_id, **ctx.limits, **(headers or {})},
        )

    def streamed(events: AsyncIterator[dict[str, Any]], ctx: RequestContext) -> StreamingResponse:
        return StreamingResponse(
            hooks.sse(events, ctx.request_id),
            media_type="text/event-stream",
            headers={"x-request-id": ctx.request_id, "Cache-Control": "no-cache", **ctx.limits},
        )

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
                return streamed(MappedStream(chunks, to_completion_chunk), ctx)
            answers = []
            for i, prompt in enumerate(prompts):
                one = hooks.fork_context(ctx, f"{ctx.request_id}-{i}") if len(prompts) > 1 else ctx
                answers.append(await pipeline.chat(to_chat_request(req, prompt), one))  # audits each outcome
        except Exception as exc:  # noqa: BLE001 - every error becomes the one envelope
            return hooks.error_response(exc, ctx.request_id)
        return ok(to_completion(ctx.request_id, req.model, answers), ctx)

    @api.post("/v1/responses")
    async def responses(request: Request) -> Response:
        ctx, req, refused = await intake(request, ResponsesRequest)
        if refused is not None or req is None:
            return refused  # type: ignore[return-value]
        try:
            messages = check_responses_request(req, gw.max_messages)
        except FinserveError as exc:
            return await hooks.reject(ctx, exc, (await request.body()))
        try:
            chat = responses_to_chat(req, messages)
            if req.stream:
                chunks = await pipeline.chat_stream(chat, ctx)
                return streamed(ResponseEvents(chunks, req, ctx.request_id), ctx)
            answer = await pipeline.chat(chat, ctx)  # audits every outcome
        except Exception as exc:  # noqa: BLE001 - every error becomes the one envelope
            return hooks.error_response(exc, ctx.request_id)
        return ok(to_response(req, ctx.request_id, answer), ctx)

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
