"""The strict config base every finserve config and API schema derives from."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Pydantic base with unknown keys rejected, so a typo in a config is an error, not a no-op."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)

    @classmethod
    def from_file(cls, path: str | Path) -> Self:
        """Load from a YAML (or JSON, which is YAML) file."""
        with open(path, encoding="utf-8") as fh:
            data: Any = yaml.safe_load(fh) or {}
        return cls.model_validate(data)

    @classmethod
    def from_yaml(cls, text: str) -> Self:
        return cls.model_validate(yaml.safe_load(text) or {})
