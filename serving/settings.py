"""Environment overrides of the serving config: ``FINSERVE_<SECTION>__<FIELD>[__<FIELD>...]``.

Precedence, lowest first: the built-in defaults (with their deployment env vars such as
FINSERVE_HTTP_PORT), the YAML file (``--config`` or FINSERVE_CONFIG; under a RayService, the app's
``args``), then these overrides. So one image and one file serve every environment and a single value
changes without a new file: ``FINSERVE_GATEWAY__MAX_TOKENS_LIMIT=256``,
``FINSERVE_RETRIEVAL__REDIS_URL=redis://...``. Names are case-insensitive; a value is validated by the
config's own schema (``"256"`` becomes 256), and a value that starts with ``[`` or ``{`` is read as JSON
(lists, maps). pydantic-settings reads the environment (finserve.contracts.settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from finserve.contracts.settings import NESTED, REDACTED, merge, overrides_reader, read_overrides, redacted

from .config import ServingConfig

ENV_PREFIX = "FINSERVE_"
__all__ = ["ENV_PREFIX", "NESTED", "REDACTED", "env_overrides", "merge", "redacted", "with_env"]

# One dict per section of ServingConfig, whatever sections it grows. Other FINSERVE_ variables (FINSERVE_POOL,
# the operator's FINSERVE_OPERATOR__...) are not sections and are left alone.
_Overrides = overrides_reader(ServingConfig, ENV_PREFIX)


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The FINSERVE_<SECTION>__... variables as a nested dict of the sections they touch."""
    return read_overrides(_Overrides, environ)


def with_env(data: dict[str, Any], environ: Mapping[str, str] | None = None) -> ServingConfig:
    """The file's data (or {} for the defaults) with the environment's overrides, validated."""
    return ServingConfig.model_validate(merge(data, env_overrides(environ)))
