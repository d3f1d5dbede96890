"""Environment overrides of the serving config: ``FINSERVE_<SECTION>__<FIELD>[__<FIELD>...]``.

Precedence, lowest first: the built-in defaults (with their deployment env vars such as
FINSERVE_HTTP_PORT), the YAML file (``--config`` or FINSERVE_CONFIG), then these overrides. So one
image and one file serve every environment and a single value changes without a new file:
``FINSERVE_GATEWAY__MAX_TOKENS_LIMIT=256``, ``FINSERVE_RETRIEVAL__REDIS_URL=redis://...``. Names are
case-insensitive; a value is validated by the config's own schema (``"256"`` becomes 256), and a value
that starts with ``[`` or ``{`` is read as JSON (lists, maps). pydantic-settings reads the environment.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from .config import ServingConfig

ENV_PREFIX = "FINSERVE_"
NESTED = "__"
REDACTED = "***"
# Field names whose values are credentials (an *_env field names a variable, it holds no secret).
_SECRET = re.compile(r"(password|secret|token|api_key|private_key)$", re.IGNORECASE)


class _OverridesBase(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter=NESTED, case_sensitive=False,
                                      extra="ignore")


# One dict per section of ServingConfig, whatever sections it grows: each holds that section's overrides.
_Overrides = create_model(  # type: ignore[call-overload]
    "_Overrides", __base__=_OverridesBase,
    **{name: (dict[str, Any], Field(default_factory=dict, description=f"Overrides of `{name}`."))
       for name in ServingConfig.model_fields},
)


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The FINSERVE_<SECTION>__... variables as a nested dict of the sections they touch."""
    if environ is None:
        found = _Overrides()
    else:  # pydantic-settings reads os.environ: a given mapping stands in for it for the call
        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(environ)
            found = _Overrides()
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return {name: _decode(section) for name, section in found.model_dump().items() if section}


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top, maps merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def with_env(data: dict[str, Any], environ: Mapping[str, str] | None = None) -> ServingConfig:
    """The file's data (or {} for the defaults) with the environment's overrides, validated."""
    return ServingConfig.model_validate(merge(data, env_overrides(environ)))


def redacted(value: Any, key: str = "") -> Any:
    """The config as plain data with credentials hidden: secret-named fields, and passwords in URLs."""
    if isinstance(value, dict):
        return {k: redacted(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v, key) for v in value]
    if value is not None and _SECRET.search(key) and not key.endswith("_env"):
        return REDACTED
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        if parts.password:
            host = parts.netloc.rsplit("@", 1)[1]
            user = f"{parts.username}:" if parts.username else ":"
            return urlunsplit(parts._replace(netloc=f"{user}{REDACTED}@{host}"))
    return value
