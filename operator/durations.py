"""Durations as the CRD spells them: ``30s``, ``5m``, ``1h30m``, ``250ms``."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN)]
"""A duration string; :func:`seconds` turns it into a number."""


def seconds(duration: str) -> float:
    """Seconds in a duration string; raises ValueError on anything else."""
    if not re.fullmatch(DURATION_PATTERN, duration):
        raise ValueError(f"{duration!r} is not a duration like 30s, 5m or 1h30m")
    return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _PART.findall(duration))


def promql_range(duration_seconds: float) -> str:
    """A PromQL range for a number of seconds (whole seconds, at least 1s)."""
    return f"{max(1, round(duration_seconds))}s"
