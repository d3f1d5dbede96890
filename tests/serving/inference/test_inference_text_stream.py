"""Text deltas from tokens: UTF-8 split across tokens, stop strings split across tokens."""

from __future__ import annotations

from finserve.serving.inference.text_stream import TextAssembler, find_stop, partial_stop_len


def utf8_decode(ids: list[int]) -> str:
    """Byte-level decoding, as byte-level BPE tokenizers do: each id is one byte."""
    return bytes(ids).decode("utf-8", errors="replace")


def feed(assembler: TextAssembler, text: str) -> list[str]:
    return [assembler.push(b) for b in text.encode()]


def test_find_stop_returns_earliest_match_from_start() -> None:
    assert find_stop("abc STOP def END", ["END", "STOP"]) == 4
    assert find_stop("abc STOP def END", ["END", "STOP"], start=5) == 13
    assert find_stop("abc", ["x", ""]) is None


def test_partial_stop_len_is_longest_proper_prefix_suffix() -> None:
    assert partial_stop_len("hello <|en", ["<|end|>"]) == 4
    assert partial_stop_len("hello", ["<|end|>"]) == 0
    assert partial_stop_len("a ab", ["abc", "b"]) == 2  # "ab" (of "abc"); a full "b" is a match, not a prefix


def test_multibyte_character_is_emitted_only_when_complete() -> None:
    asm = TextAssembler(utf8_decode)
    deltas = feed(asm, "a💳b")
    assert deltas == ["a", "", "", "", "💳", "b"]
    assert asm.text == "a💳b"


def test_stop_string_split_over_tokens_is_never_emitted() -> None:
    asm = TextAssembler(utf8_decode, ["STOP"])
    deltas = feed(asm, "go STOP after")
    assert "".join(deltas) == "go "
    assert asm.stopped
    assert asm.push(ord("x")) == ""  # nothing after a stop


def test_held_back_prefix_is_released_when_it_turns_out_not_to_be_a_stop() -> None:
    asm = TextAssembler(utf8_decode, ["STOP"])
    deltas = feed(asm, "STO")
    assert deltas == ["", "", ""]
    assert asm.push(ord("P")) == "" and asm.stopped

    asm = TextAssembler(utf8_decode, ["STOP"])
    assert "".join(feed(asm, "STAY")) == "STAY"


def test_finish_releases_a_trailing_partial_stop() -> None:
    asm = TextAssembler(utf8_decode, ["STOP"])
    assert "".join(feed(asm, "end ST")) == "end "
    assert asm.finish() == "ST"
    assert asm.text == "end ST"
    assert asm.token_count == 6


def test_concatenated_deltas_equal_final_text() -> None:
    asm = TextAssembler(utf8_decode, ["\n\n", "User:"])
    deltas = feed(asm, "Line one\nUser said é\n\nrest")
    assert "".join(deltas) == asm.text == "Line one\nUser said é"
