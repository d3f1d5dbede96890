"""Closes every HTTP read (GET/HEAD) but the probes when auth is on: model metadata, /metrics, /docs and
/openapi.json (FastAPI's own routes, which no endpoint code guards). POST endpoints admit themselves with
Ingress.admit, because their refusals are audited; tests/serving/access walk every route to check both."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..errors import FinserveError, map_error
from .authenticator import Authenticator
from .policy import require_scope, required_scope

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]
READS = frozenset({"GET", "HEAD"})


class ReadAuthMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.auth = authenticator

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http" or scope["method"] not in READS or not self.auth.enabled:
            return await self.app(scope, receive, send)
        needed = required_scope(scope["path"])
        if needed is not None:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
            try:
                require_scope(self.auth.authenticate(headers.get("authorization")), needed)
            except FinserveError as exc:
                return await _refuse(send, exc)
        return await self.app(scope, receive, send)


async def _refuse(send: Callable[[Any], Awaitable[None]], exc: FinserveError) -> None:
    m = map_error(exc)
    body = json.dumps(
        {"error": {"message": m.message, "type": m.code, "code": m.code, "param": m.param}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if m.www_authenticate:
        headers.append((b"www-authenticate", m.www_authenticate.encode()))
    await send({"type": "http.response.start", "status": m.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
