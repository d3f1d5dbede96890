"""The routing table: which adapter versions serve a model, and with what absolute weights.

The operator writes it (a ConfigMap, key :data:`CONFIGMAP_KEY`); serving reads it (the ConfigMap
mounted as a file, or a local file in the embedded setup) and picks an adapter per request.
Weights are absolute, never deltas, so writing the same table twice is a no-op.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field, model_validator

from .adapters import AdapterRef
from .config import StrictModel

CONFIGMAP_KEY = "routes.json"
ADAPTER_OVERRIDE_HEADER = "x-finserve-adapter"
STICKY_HEADERS = ("x-finserve-session", "x-user-id")


class Route(StrictModel):
    """How one client-facing model name maps onto adapter versions of a base model."""

    base_model: str = Field(description="Base model id every adapter of this route is trained on.")
    stable: AdapterRef = Field(description="The adapter version serving (100 - canary_weight) % of traffic.")
    canary: AdapterRef | None = Field(None, description="The adapter version under test, if any.")
    canary_weight: int = Field(0, ge=0, le=100, description="Percent of traffic sent to the canary.")
    rollout: str | None = Field(None, description="namespace/name of the ModelRollout that owns this route.")
    shadow_percent: float = Field(
        0.0,
        ge=0.0,
        le=100.0,
        description="Percent of the stable version's requests mirrored to the canary as shadow traffic: the "
        "canary answers them too, guarded and audited (route shadow) and compared with the stable answer, "
        "but its answer is never returned.",
    )

    @model_validator(mode="after")
    def _weight_needs_canary(self) -> Route:
        if self.canary is None and self.canary_weight:
            raise ValueError("canary_weight > 0 needs a canary adapter")
        if self.canary is None and self.shadow_percent:
            raise ValueError("shadow_percent > 0 needs a canary adapter")
        return self

    def candidates(self) -> list[AdapterRef]:
        return [self.stable] + ([self.canary] if self.canary is not None else [])


class RoutingTable(StrictModel):
    """Every route the serving stack knows, keyed by client-facing model name."""

    revision: int = Field(0, ge=0, description="Bumped on every write; readers ignore older revisions.")
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC), description="Last write.")
    routes: dict[str, Route] = Field(default_factory=dict, description="Model name -> route.")

    def to_configmap_data(self) -> dict[str, str]:
        return {CONFIGMAP_KEY: self.model_dump_json(indent=2)}

    @classmethod
    def from_configmap_data(cls, data: dict[str, str] | None) -> RoutingTable:
        if not data or CONFIGMAP_KEY not in data:
            return cls()
        return cls.model_validate_json(data[CONFIGMAP_KEY])

    @classmethod
    def load(cls, path: str | Path) -> RoutingTable:
        p = Path(path)
        # A mounted ConfigMap is a folder with one file per key.
        if p.is_dir():
            p = p / CONFIGMAP_KEY
        if not p.exists():
            return cls()
        return cls.model_validate_json(p.read_text(encoding="utf-8"))

    def save(self, path: str | Path) -> None:
        """Atomic write, so a reader never sees half a table."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="json"), indent=2), encoding="utf-8")
        tmp.replace(p)

    def with_route(self, model: str, route: Route) -> RoutingTable:
        routes = dict(self.routes)
        routes[model] = route
        return RoutingTable(revision=self.revision + 1, routes=routes)
