"""What one Gateway replica keeps for a drain: whether it drains, and how many requests it is answering.

HTTP requests are counted at the ASGI level (InFlightMiddleware), so a streamed answer counts until its last
byte is sent, and a refused one until its error is; gRPC inference calls are counted by the Gateway around
ModelInfer. Probes are not counted: a load balancer asking /readyz must not hold the drain open.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from ..access.policy import OPEN_PATHS

if TYPE_CHECKING:  # access.ingress imports the pipeline, which imports the config that imports this package
    from ..access.ingress import Readiness

# What readiness reports while draining: one check, failing, in place of the stages (not asked any more).
ACCEPTING = "accepting"


class DrainState:
    """One per Gateway replica (its event loop is the only writer: no lock needed)."""

    def __init__(self) -> None:
        self.draining_since: float | None = None
        self._in_flight = 0

    @property
    def draining(self) -> bool:
        return self.draining_since is not None

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def start(self) -> int:
        """Readiness goes false from now on; requests that still arrive are served. Returns the in-flight count."""
        if self.draining_since is None:
            self.draining_since = time.monotonic()
        return self._in_flight

    @contextmanager
    def track(self) -> Iterator[None]:
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    def gate(self, readiness: Readiness) -> Readiness:
        """``readiness`` while serving; ``{"accepting": False}`` once draining, so every probe (HTTP /readyz,
        /v2/health/ready, gRPC health and ServerReady) says not ready from the same flag."""

        async def gated() -> dict[str, bool]:
            if self.draining:
                return {ACCEPTING: False}
            return await readiness()

        return gated


class InFlightMiddleware:
    """Pure ASGI middleware counting the HTTP requests a replica is answering, probes excepted."""

    def __init__(self, app: ASGIApp, state: DrainState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        with self.state.track():
            await self.app(scope, receive, send)
