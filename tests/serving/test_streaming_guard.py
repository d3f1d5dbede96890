"""Streaming output is released only once the guard can see every entity whole (real Presidio)."""

from __future__ import annotations

import pytest

from finserve.serving.guard.config import GuardConfig
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.streaming_guard import StreamReleaser

CARD = "4111 1111 1111 1111"
TEXT = (
    f"Thanks for waiting. I can see the payment on card {CARD} from yesterday, and a second one "
    "today; please contact support at help@example.com so that we can refund the duplicate charge."
)


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
    pieces = [TEXT[i : i + size] for i in range(0, len(TEXT), size)]
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


# Cards the model writes obfuscated, longer than the 64-character holdback once spelled out.
OBFUSCATED = [
    ("spaced-dots", "4458 . 5630 . 7407 . 7526", ["4458", "5630", "7407", "7526"]),
    (
        "words",
        "four four five eight five six three zero seven four zero seven seven five two six",
        ["four four", "five six", "seven five"],
    ),
    ("fullwidth", "４４５８ ５６３０ ７４０７ ７５２６", ["４４５８", "７５２６"]),
    ("single-digits", "4 4 5 8 5 6 3 0 7 4 0 7 7 5 2 6", ["4 4 5 8", "7 5 2 6"]),
]


@pytest.mark.parametrize(("case", "card", "fragments"), OBFUSCATED, ids=[o[0] for o in OBFUSCATED])
@pytest.mark.parametrize("size", [1, 4, 9])
async def test_obfuscated_card_is_held_until_it_can_be_judged(guard, case, card, fragments, size):
    text = (
        f"Sure. The card {card} is now blocked, and a replacement is on its way to the address we hold "
        "for you; it should arrive within five working days."
    )
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    released, chunks, releaser = await _stream(guard, pieces)
    for chunk in chunks:
        assert not any(fragment in chunk for fragment in fragments)
    assert released == guard.scan(text).text
    assert "<CREDIT_CARD>" in released and releaser.findings == {"CREDIT_CARD": 1}


async def test_an_open_number_is_not_released_past_the_holdback(guard):
    releaser = StreamReleaser(lambda texts: _async(guard.scan_many(texts)))
    sent = await releaser.feed(
        "Your card is four four five eight five six three zero seven four zero seven seven "
    )
    assert "four" not in sent
    sent += await releaser.feed("five two six, thanks for waiting and have a good day today, goodbye now. ")
    sent += await releaser.finish()
    assert "<CREDIT_CARD>" in sent and "four" not in sent


async def _async(value):
    return value
