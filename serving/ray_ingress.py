"""The ASGI middleware Ray Serve puts in front of the Gateway app, before Ray reads the request id.

Ray Serve takes ``x-request-id`` itself, before finserve sees the request: it is the request id of
Ray's access-log lines and Ray echoes it in its own ``X-Request-ID`` response header. So the value
finserve would refuse or pseudonymise (serving/client_fields.py) is rewritten here first, in Ray's
proxy or the Gateway replica's own server (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``, set by
serve_env.py and the chart): a value outside the charset, or one holding a card number, becomes its
pseudonym. One that failed the charset is marked (``x-finserve-invalid-header``), so the gateway still
answers it with the 400 naming ``x-request-id``, under the pseudonym. The guard's wider PII check runs
in the gateway as usual.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .client_ids import INVALID_HEADER_MARK, REQUEST_ID, holds_card_number, pseudonym

_RID = b"x-request-id"
_MARK = INVALID_HEADER_MARK.encode()


def rewrite_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers with x-request-id made safe (and any mark a client sent itself dropped)."""
    out: list[tuple[bytes, bytes]] = []
    for key, value in headers:
        name = key.lower()
        if name == _MARK:
            continue
        if name != _RID:
            out.append((key, value))
            continue
        text = value.decode("latin-1")
        valid = REQUEST_ID.fullmatch(text) is not None
        if valid and not holds_card_number(text):
            out.append((key, value))
            continue
        out.append((_RID, pseudonym(text).encode()))
        if not valid:
            out.append((_MARK, _RID))
    return out


def one_request_id(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The response headers with only the first x-request-id: the gateway sets it and Ray's middleware appends
    the same id again, which HTTP clients read joined ("id, id"; the openai SDK's ``request_id``)."""
    out: list[tuple[bytes, bytes]] = []
    seen = False
    for key, value in headers:
        if key.lower() == _RID:
            if seen:
                continue
            seen = True
        out.append((key, value))
    return out


class SafeRequestId:
    """Pure ASGI middleware: rewrites the request's headers, and sends one x-request-id back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_one_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": one_request_id(list(message.get("headers", ())))}
            await send(message)

        scope = {**scope, "headers": rewrite_headers(list(scope.get("headers", ())))}
        await self.app(scope, receive, send_one_id)


def middlewares() -> list[Middleware]:
    """RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH target: Ray wraps these outside its own request-id one."""
    return [Middleware(SafeRequestId)]
