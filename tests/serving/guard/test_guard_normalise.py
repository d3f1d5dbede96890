"""The normalised view and its map back to the original characters (pure, no Presidio)."""

from __future__ import annotations

import pytest

from finserve.serving.guard.normalise import normalise, open_tail_start

# (case id, original, normalised view)
VIEWS: list[tuple[str, str, str]] = [
    ("ascii-unchanged", "I paid 12.50 on 12/05/2024", "I paid 12.50 on 12/05/2024"),
    ("fullwidth-digits", "card ４４５８", "card 4458"),
    ("arabic-indic-digits", "٤٤٥٨٥٦٣٠", "44585630"),
    ("zero-width-dropped", "44\u200b58\u2060 5630", "4458 5630"),
    ("en-dash", "4458\u20135630", "4458-5630"),
    ("single-digits-joined", "is 4 4 5 8 5 6 3 0 ok", "is 44585630 ok"),
    ("three-single-digits-stay", "1 2 3 go", "1 2 3 go"),
    ("loose-separator-tightened", "4458 . 5630 - 7407", "4458.5630-7407"),
    ("sentence-full-stop-stays", "since 1995. 874 925 6084", "since 1995. 874 925 6084"),
    ("digit-words", "four four five eight", "4458"),
    ("digit-words-groups", "four four, five eight", "44-58"),
    ("double-and-oh", "oh seven double seven", "0777"),
    ("few-digit-words-stay", "I need one or two cards", "I need one or two cards"),
    ("spelled-email", "jane dot doe at mail dot com", "jane.doe@mail.com"),
    ("bracketed-email", "j.smith [at] example (dot) org", "j.smith@example.org"),
    ("real-email-untouched", "email me at jane.doe@example.co.uk", "email me at jane.doe@example.co.uk"),
]


@pytest.mark.parametrize(("case", "text", "view"), VIEWS, ids=[v[0] for v in VIEWS])
def test_view(case: str, text: str, view: str) -> None:
    assert normalise(text).text == view


def test_spans_map_back_to_the_original_characters() -> None:
    text = "my card is ４ ４ ５ ８ ５ ６\u200b ３ ０ ok"
    view = normalise(text)
    start = view.text.index("4458")
    s, e = view.original_span(start, start + 8)
    assert text[s:e] == "４ ４ ５ ８ ５ ６\u200b ３ ０"


def test_words_map_back_to_the_words() -> None:
    text = "card four four five eight five six three zero done"
    view = normalise(text)
    s, e = view.original_span(view.text.index("4"), view.text.index("0") + 1)
    assert text[s:e] == "four four five eight five six three zero"


@pytest.mark.parametrize(
    ("text", "open_from"),
    [
        ("card is 4458 . 5630 ", 8),
        ("four four five", 0),
        ("call (201) 555-", 5),
        ("all done.", 9),
        ("", 0),
    ],
)
def test_open_tail(text: str, open_from: int) -> None:
    assert open_tail_start(text) == open_from
