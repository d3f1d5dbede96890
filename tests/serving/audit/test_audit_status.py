"""The audit log's up-front check: the pure reason, the cache in front of it, and AuditLog.refusal on a real
folder. (A read-only log refused before generating: tests/serving/test_gateway_audit.py.)"""

from __future__ import annotations

import pytest

from finserve.serving.audit import AuditConfig, AuditLog
from finserve.serving.audit.status import CachedRefusal, refusal_reason
from finserve.serving.config import ServingConfig


@pytest.mark.parametrize(
    ("free", "read_only", "writable", "margin", "reason"),
    [
        (10_000, False, True, 1_000, None),
        (999, False, True, 1_000, "less than 1000 bytes free"),
        (0, False, True, 0, None),  # margin 0: no space check up front
        (10_000, True, True, 1_000, "read-only"),
        (10_000, False, False, 1_000, "cannot be written"),
    ],
)
def test_refusal_reason(free: int, read_only: bool, writable: bool, margin: int, reason: str | None) -> None:
    got = refusal_reason(free_bytes=free, read_only=read_only, writable=writable, margin_bytes=margin)
    assert got == reason if reason is None else reason in (got or "")


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


async def test_a_clear_answer_is_reused_for_the_ttl_a_refusal_is_asked_again() -> None:
    clock, answers, calls = Clock(), [None, "full", None, None], []

    async def fetch() -> str | None:
        calls.append(clock.now)
        return answers[len(calls) - 1]

    cached = CachedRefusal(fetch, 1.0, clock)
    assert await cached.get() is None
    clock.now += 0.5
    assert await cached.get() is None and len(calls) == 1  # reused within the TTL
    clock.now += 0.6
    assert await cached.get() == "full" and len(calls) == 2
    assert await cached.get() is None and len(calls) == 3  # a refusal is not reused: space came back
    assert await cached.get() is None and len(calls) == 3


async def test_concurrent_callers_share_one_fetch() -> None:
    import asyncio

    release, calls = asyncio.Event(), []

    async def fetch() -> str | None:
        calls.append(1)
        await release.wait()
        return "full"

    cached = CachedRefusal(fetch, 0.0, Clock())
    waiting = [asyncio.ensure_future(cached.get()) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == ["full"] * 3 and len(calls) == 1


async def test_a_fetch_that_fails_refuses_nothing() -> None:
    async def fetch() -> str | None:
        raise ConnectionError("audit replica gone")

    assert await CachedRefusal(fetch, 0.0, Clock()).get() is None


def test_audit_log_refusal_reads_the_real_folder(tmp_path) -> None:
    ok = AuditLog(AuditConfig(path=tmp_path / "a" / "audit.jsonl"))
    assert ok.refusal() is None
    full = AuditLog(AuditConfig(path=tmp_path / "b" / "audit.jsonl", refuse_below_free_bytes=2**62))
    assert "bytes free" in (full.refusal() or "")


def test_the_margin_must_hold_a_maximal_line() -> None:
    with pytest.raises(ValueError, match="refuse_below_free_bytes"):
        ServingConfig.model_validate({"audit": {"refuse_below_free_bytes": 1000}})
    ServingConfig.model_validate({"audit": {"refuse_below_free_bytes": 0}})
