"""The `finserve guard` line protocol: parse errors never echo the line's content."""

from __future__ import annotations

import pytest

from finserve.serving.guard import Finding, GuardResult
from finserve.serving.guard.lines import parse_line, render_result


def test_parses_a_text_line() -> None:
    assert parse_line('{"text": "hello"}').text == "hello"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("card 4111 1111 1111 1111", "not valid JSON"),
        ('["4111 1111 1111 1111"]', "expected a JSON object"),
        ('{"txt": "4111 1111 1111 1111"}', "text: Field required"),
        ('{"text": 4111111111111111}', "text: Input should be a valid string"),
        ('{"text": "x", "card": "4111 1111 1111 1111"}', "card: Extra inputs are not permitted"),
    ],
)
def test_errors_describe_the_problem_without_the_content(line: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_line(line)
    assert message in str(info.value)
    assert "4111" not in str(info.value)


def test_render_result() -> None:
    result = GuardResult(text="<PERSON> here", findings=[Finding(type="PERSON", start=0, end=4, score=0.85)])
    assert render_result(result) == {
        "text": "<PERSON> here",
        "entities": [{"type": "PERSON", "start": 0, "end": 4}],
    }
