"""The JSON-lines protocol of `finserve guard`: one ``{"text": ...}`` in, one result or error out.

Error messages never echo the input: a malformed line may still hold PII.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, ValidationError

from finserve.contracts import StrictModel

from .results import GuardResult


class GuardLine(StrictModel):
    """One input line."""

    text: str = Field(description="Text to scan.")


def parse_line(line: str) -> GuardLine:
    """Raises ValueError with a message free of the line's content."""
    try:
        data: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ValueError('expected a JSON object like {"text": "..."}')
    try:
        return GuardLine.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'line'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        raise ValueError(problems) from None


def render_result(result: GuardResult) -> dict[str, Any]:
    return {
        "text": result.text,
        "entities": [{"type": f.type, "start": f.start, "end": f.end} for f in result.findings],
    }
