"""Whether an audit line could be appended now, from cheap checks, cached for a moment (an early exit only).

The gateway asks before the expensive stages, so a request is refused (503 audit_unavailable, Retry-After)
before anything is generated while the log's volume is full or read-only. It is no guarantee: the append
still fails closed on its own when a line cannot be made durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


def refusal_reason(*, free_bytes: int, read_only: bool, writable: bool, margin_bytes: int) -> str | None:
    """Why the next append would fail (pure), or None. ``margin_bytes`` 0 turns the space check off."""
    if read_only:
        return "the audit log's file system is read-only"
    if not writable:
        return "the audit log cannot be written (permissions)"
    if margin_bytes and free_bytes < margin_bytes:
        return f"less than {margin_bytes} bytes free for the audit log"
    return None


class CachedRefusal:
    """The audit stage's refusal reason. A clear answer is reused for ``ttl_s``; a refusal is asked again on
    the next call, so answers resume with the first request after space returns (a refused request costs
    little, and its own line is written or tried anyway). One fetch at a time: concurrent callers wait for
    it. A fetch that fails counts as no reason: the append decides then."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[str | None]],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.ttl_s = ttl_s
        self._clock = clock
        self._reason: str | None = None
        self._at: float | None = None
        self._pending: asyncio.Future[str | None] | None = None

    async def get(self) -> str | None:
        if self._pending is not None:
            return await asyncio.shield(self._pending)
        if self._reason is None and self._at is not None and self._clock() - self._at < self.ttl_s:
            return None
        self._pending = asyncio.ensure_future(self._refresh())
        try:
            return await asyncio.shield(self._pending)
        finally:
            if self._pending is not None and self._pending.done():
                self._pending = None

    async def _refresh(self) -> str | None:
        try:
            self._reason = await self._fetch()
        except Exception as exc:  # noqa: BLE001 - an early check that cannot run must not refuse by itself
            log.debug("audit status unknown: %s", type(exc).__name__)
            self._reason = None
        self._at = self._clock()
        self._pending = None
        return self._reason
