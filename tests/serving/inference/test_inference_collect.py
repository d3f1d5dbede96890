"""collect(): a stream becomes a whole completion with the offsets of its first and last text (for TTFT and
inter-token latency of non-streamed answers). Pure: a scripted stream, no engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from finserve.contracts import AdapterRef
from finserve.serving.inference.engine import collect
from finserve.serving.inference.types import StreamChunk, Usage


async def _stream(deltas: list[str]) -> AsyncIterator[StreamChunk]:
    for i, delta in enumerate(deltas):
        await asyncio.sleep(0)
        last = i == len(deltas) - 1
        yield StreamChunk(
            delta=delta,
            finish_reason="stop" if last else None,
            usage=Usage(prompt_tokens=3, completion_tokens=len(deltas)) if last else None,
        )


async def test_a_whole_answer_carries_its_first_and_last_text_offsets() -> None:
    result = await collect(_stream(["", "Cards ", "arrive", ""]), AdapterRef.base())
    assert result.text == "Cards arrive" and result.completion_tokens == 4
    assert result.first_token_s is not None and result.last_token_s is not None
    assert 0 <= result.first_token_s <= result.last_token_s


async def test_an_answer_without_text_has_no_token_times() -> None:
    result = await collect(_stream([""]), AdapterRef.base())
    assert result.text == "" and result.first_token_s is None and result.last_token_s is None
