"""`finserve guard` through typer's CliRunner with the real serving config loader and the real guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from finserve.commands import guard as guard_command


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    # Only this command: other engineers' commands must not be able to break these tests.
    app = typer.Typer()
    app.callback()(lambda: None)
    guard_command.register(app)
    return app


def _run(app: typer.Typer, lines: list[str], *args: str) -> tuple[int, list[dict]]:
    result = CliRunner().invoke(app, ["guard", *args], input="".join(line + "\n" for line in lines))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, [json.loads(line) for line in result.stdout.splitlines()]


def test_masks_each_line_with_the_serving_policy(app: typer.Typer) -> None:
    code, out = _run(
        app,
        [
            json.dumps({"text": "my card is 4111 1111 1111 1111, I am John Smith"}),
            json.dumps({"text": "when will my card arrive?"}),
        ],
    )
    assert code == 0
    assert out == [
        {
            "text": "my card is <CREDIT_CARD>, I am <PERSON>",
            "entities": [
                {"type": "CREDIT_CARD", "start": 11, "end": 30},
                {"type": "PERSON", "start": 37, "end": 47},
            ],
        },
        {"text": "when will my card arrive?", "entities": []},
    ]


def test_bad_lines_get_an_error_each_and_exit_1(app: typer.Typer) -> None:
    code, out = _run(
        app,
        [
            "card 4111 1111 1111 1111",
            json.dumps({"text": "ssn 536-22-8145"}),
            json.dumps({"txt": "4111 1111 1111 1111"}),
            "",
            json.dumps([1, 2]),
        ],
    )
    assert code == 1
    assert [sorted(o) for o in out] == [["error"], ["entities", "text"], ["error"], ["error"]]
    assert out[1]["text"] == "ssn <US_SSN>"
    assert not any("4111" in json.dumps(o) for o in out)


def test_uses_the_guard_section_of_a_config_file(app: typer.Typer, tmp_path: Path) -> None:
    config = tmp_path / "serving.yaml"
    config.write_text("guard:\n  default_action: mask\n  policies: {US_SSN: redact}\n", encoding="utf-8")
    code, out = _run(
        app, [json.dumps({"text": "ssn 536-22-8145, mail jane@example.com"})], "--config", str(config)
    )
    assert code == 0
    assert out[0]["text"] == "ssn , mail ****************"


def test_invalid_config_exits_2_without_a_traceback(app: typer.Typer, tmp_path: Path) -> None:
    config = tmp_path / "serving.yaml"
    config.write_text("guard:\n  entities: [CREDIT_CARDS]\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["guard", "--config", str(config)], input="")
    assert result.exit_code == 2
    assert "cannot load the guard config" in result.stderr
    assert "Traceback" not in result.output
