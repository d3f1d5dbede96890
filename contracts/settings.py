"""Environment overrides of a strict config, the way every finserve process reads them.

A process names a prefix and its config model; ``<PREFIX><FIELD>[__<FIELD>...]`` variables then
override the YAML file, which overrides the defaults: serving reads ``FINSERVE_GATEWAY__MAX_TOKENS_LIMIT``,
the operator ``FINSERVE_OPERATOR__PROMETHEUS__URL``. pydantic-settings reads the environment (names
case-insensitive); the values are validated by the config's own strict schema afterwards, so a bad
value fails naming its field, and a value that starts with ``[`` or ``{`` is read as JSON.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

NESTED = "__"
REDACTED = "***"
# Field names whose values are credentials (an *_env field names a variable, it holds no secret).
_SECRET = re.compile(r"(password|secret|token|api_key|private_key)$", re.IGNORECASE)


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def overrides_reader(config: type[BaseModel], prefix: str) -> type[BaseSettings]:
    """A pydantic-settings class that reads ``prefix`` variables: a dict per section of ``config`` (a field
    that is itself a model), a string per plain field. Other variables are ignored here; the config's
    own validation judges the values."""

    class _Base(BaseSettings):
        model_config = SettingsConfigDict(
            env_prefix=prefix, env_nested_delimiter=NESTED, case_sensitive=False, extra="ignore"
        )

    fields: dict[str, Any] = {}
    for name, info in config.model_fields.items():
        if _is_section(info.annotation):
            fields[name] = (
                dict[str, Any],
                Field(default_factory=dict, description=f"Overrides of `{name}`."),
            )
        else:
            fields[name] = (str | None, Field(None, description=f"Override of `{name}`."))
    return create_model(f"{config.__name__}Overrides", __base__=_Base, **fields)


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def read_overrides(reader: type[BaseSettings], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The variables ``reader`` (from :func:`overrides_reader`) finds, as a nested dict of what they touch;
    ``environ`` stands in for os.environ when given."""
    if environ is None:
        found = reader()
    else:  # pydantic-settings reads os.environ: the given mapping stands in for it for the call
        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(environ)
            found = reader()
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return {name: _decode(value) for name, value in found.model_dump().items() if value not in (None, {})}


def unknown_names(config: type[BaseModel], prefix: str, environ: Mapping[str, str]) -> dict[str, str]:
    """Variables under ``prefix`` whose first part names no field of ``config`` (a typo), keyed by that part:
    laid over the data, the strict config rejects them naming the part, where pydantic-settings would skip
    them. Only for a prefix that belongs to one config wholly (``FINSERVE_`` is shared by plain variables)."""
    upper = prefix.upper()
    out: dict[str, str] = {}
    for key, value in environ.items():
        if key.upper().startswith(upper):
            head = key[len(prefix) :].split(NESTED, 1)[0].lower()
            if head not in config.model_fields:
                out[head] = value
    return out


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top, maps merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
        )
    return out


def redacted(value: Any, key: str = "") -> Any:
    """A config as plain data with credentials hidden: secret-named fields, and passwords in URLs."""
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
