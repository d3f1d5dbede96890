"""Adapter references: ``NAME@VERSION`` strings as clients, routes and the registry spell them."""

from __future__ import annotations

import re
from typing import Self

from pydantic import Field, field_validator

from .config import StrictModel

BASE_ADAPTER = "base"
"""The pseudo-adapter name meaning "the base model, no LoRA"."""

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-_.]{0,61}[a-z0-9])?$")
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


class AdapterRef(StrictModel):
    """One adapter version. ``name="base"`` with version ``"0.0.0"`` means the bare base model."""

    name: str = Field(description="Adapter name, a DNS-label-like identifier.")
    version: str = Field(description="Semantic version of the adapter, e.g. 1.2.0.")

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"adapter name {v!r} must be lowercase letters, digits, '-', '_' or '.'")
        return v

    @field_validator("version")
    @classmethod
    def _check_version(cls, v: str) -> str:
        if not _SEMVER.match(v):
            raise ValueError(f"adapter version {v!r} is not a semantic version (MAJOR.MINOR.PATCH)")
        return v

    @classmethod
    def parse(cls, ref: str) -> Self:
        """Parse ``NAME@VERSION``; raises ValueError with a readable message."""
        name, sep, version = ref.partition("@")
        if not sep or not name or not version:
            raise ValueError(f"adapter reference {ref!r} must look like NAME@VERSION")
        return cls(name=name, version=version)

    @classmethod
    def base(cls) -> Self:
        return cls(name=BASE_ADAPTER, version="0.0.0")

    @property
    def is_base(self) -> bool:
        return self.name == BASE_ADAPTER

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    def __hash__(self) -> int:
        return hash((self.name, self.version))


def semver_key(version: str) -> tuple[int, int, int, int, str]:
    """Sort key for semantic versions: releases after their pre-releases."""
    m = _SEMVER.match(version)
    if not m:
        raise ValueError(f"{version!r} is not a semantic version")
    core, _, pre = version.partition("+")[0].partition("-")
    major, minor, patch = (int(x) for x in core.split("."))
    return (major, minor, patch, 0 if pre else 1, pre)
