"""Streaming output is released only once the guard can see every entity whole (real Presidio)."""

from __future__ import annotations

import pytest

from finserve.serving.guard.config import GuardConfig
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.streaming_guard import StreamReleaser

CARD = "4111 1111 1111 1111"
TEXT = (f"Thanks for waiting. I can see the payment on card {CARD} from yesterday, and a second one "
        "today; please contact support at help@example.com so that we can refund the duplicate charge.")


@pytest.fixture(scope="module")
def guard() -> PIIGuard:
    return PIIGuard(GuardConfig())


async def _stream(guard: PIIGuard, pieces: list[str]) -> tuple[str, list[str], StreamReleaser]:
    async def scan_many(texts: list[str]):
        return guard.scan_many(texts)

    releaser = StreamReleaser(scan_many)
    sent = []
    for piece in pieces:
        sent.append(await releaser.feed(piece))
    sent.append(await releaser.finish())
    return "".join(sent), sent, releaser


@pytest.mark.parametrize("size", [1, 3, 7, 16])
async def test_no_entity_leaks_whatever_the_token_size(guard, size):
    pieces = [TEXT[i:i + size] for i in range(0, len(TEXT), size)]
    released, chunks, releaser = await _stream(guard, pieces)
    for chunk in chunks:
        assert "1111" not in chunk and "help@example" not in chunk
    assert "<CREDIT_CARD>" in released and "<EMAIL_ADDRESS>" in released
    assert releaser.findings == {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1}
    assert released == guard.scan(TEXT).text


async def test_text_is_released_before_the_end(guard):
    pieces = [w + " " for w in TEXT.split(" ")]
    _, chunks, _ = await _stream(guard, pieces)
    assert any(chunks[:-1]), "a long answer must not be held back until the last token"
