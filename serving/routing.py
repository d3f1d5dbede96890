"""The serving side of a rollout: routing-table weights -> one adapter version per request.

The operator writes the table (contracts.routing); this module reads it and decides. The decisions
are pure functions (:func:`choose` picks the version that answers, :func:`mirror` whether a stable
request is also mirrored to the canary as shadow traffic); :class:`Router` only adds reloading from
a file that a mounted ConfigMap keeps current.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from pydantic import Field

from finserve.contracts import AdapterRef, Route, RoutingTable, StrictModel

from .errors import Forbidden, InvalidRequest, ModelNotFound

log = logging.getLogger(__name__)

Role = Literal["stable", "canary", "override"]


@dataclass(frozen=True)
class RouteChoice:
    model: str
    adapter: AdapterRef
    role: Role
    # The canary that also answers this request as shadow traffic (never returned); None: not mirrored.
    shadow: AdapterRef | None = None


def bucket(key: str, salt: str) -> int:
    """Stable 0..99 bucket for a sticky key; salted by the canary so each rollout reshuffles."""
    digest = hashlib.sha256(f"{salt}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def choose(
    model: str,
    route: Route,
    sticky_key: str | None,
    override: str | None,
    rand: float,
    any_version: bool = False,
) -> RouteChoice:
    """Pick the adapter for one request.

    ``override`` (the x-finserve-adapter header) wins, if it names a version the route serves now (its
    stable or canary: a rolled-back canary has left the route) or ``any_version`` (in-process callers
    such as the answer evaluation, never a client); with a sticky key the same user keeps the same side
    while the weight holds; without one, ``rand`` in [0, 1) decides.
    """
    if override:
        try:
            ref = AdapterRef.parse(override)
        except ValueError as exc:
            # The message names the rule, never the value (it is client input).
            raise InvalidRequest(
                "x-finserve-adapter must be NAME@VERSION: a lower-case name and a semantic version",
                param="x-finserve-adapter",
            ) from exc
        if not any_version and ref not in route.candidates():
            raise Forbidden(
                "x-finserve-adapter may only name a version this model's route serves now (its stable "
                "or canary)",
                param="x-finserve-adapter",
            )
        return RouteChoice(model, ref, "override")
    if route.canary is None or route.canary_weight <= 0:
        return RouteChoice(model, route.stable, "stable")
    if route.canary_weight >= 100:
        return RouteChoice(model, route.canary, "canary")
    point = bucket(sticky_key, str(route.canary)) if sticky_key else int(rand * 100)
    if point < route.canary_weight:
        return RouteChoice(model, route.canary, "canary")
    return RouteChoice(model, route.stable, "stable")


def _unit(key: str, salt: str) -> float:
    """Stable point in [0, 1) for a sticky key (finer than :func:`bucket`: shadow percents may be fractions)."""
    digest = hashlib.sha256(f"{salt}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def mirror(route: Route, choice: RouteChoice, sticky_key: str | None, rand: float) -> AdapterRef | None:
    """The canary to mirror this request to as shadow traffic, or None.

    Only requests the weights sent to the stable version are mirrored (a canary or override answer has
    nothing to be compared with), a ``shadow_percent`` share of them. A sticky key is hashed with its own
    salt, apart from the canary split: the same user is mirrored every time or never while the percent
    holds, and whether a user is mirrored says nothing about which side the weights put them on.
    """
    if choice.role != "stable" or route.canary is None or route.shadow_percent <= 0:
        return None
    point = _unit(sticky_key, f"shadow|{route.canary}") if sticky_key else rand
    return route.canary if point * 100 < route.shadow_percent else None


class RouterConfig(StrictModel):
    """Where routes come from: the operator's table, falling back to routes defined here."""

    table_path: str | None = Field(
        None,
        description="Routing table file, or a mounted ConfigMap folder holding routes.json "
        "(env FINSERVE_ROUTING_TABLE). None: only `routes` below.",
    )
    reload_interval_s: float = Field(2.0, ge=0.1, description="How often to check the table for changes.")
    routes: dict[str, Route] = Field(
        default_factory=dict,
        description="Routes used when the table has no entry for a model (the embedded default).",
    )


class Router:
    """Thread-safe enough for one event loop: reloads are atomic swaps of an immutable table."""

    def __init__(self, config: RouterConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()
        self._table = RoutingTable()
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self.reload(force=True)

    @property
    def table(self) -> RoutingTable:
        return self._table

    def models(self) -> dict[str, Route]:
        self.reload()
        merged = dict(self.config.routes)
        merged.update(self._table.routes)
        return merged

    def route(self, model: str) -> Route:
        routes = self.models()
        if model not in routes:
            # Never echoes the name: it is client input (it may be anything, PII included).
            raise ModelNotFound(
                "the model is not served here; see GET /v1/models for the served names", param="model"
            )
        return routes[model]

    def pick(
        self,
        model: str,
        sticky_key: str | None = None,
        override: str | None = None,
        any_version: bool = False,
    ) -> RouteChoice:
        route = self.route(model)
        choice = choose(model, route, sticky_key, override, self._rng.random(), any_version)
        shadow = mirror(route, choice, sticky_key, self._rng.random())
        return replace(choice, shadow=shadow) if shadow is not None else choice

    def reload(self, force: bool = False) -> None:
        path = self.config.table_path
        if not path:
            return
        now = time.monotonic()
        if not force and now - self._checked < self.config.reload_interval_s:
            return
        self._checked = now
        p = Path(path)
        target = p / "routes.json" if p.is_dir() else p
        try:
            st = target.stat()
        except FileNotFoundError:
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp and not force:
            return
        try:
            table = RoutingTable.load(path)
        except ValueError as exc:
            # A bad table must not take serving down: keep the last good one and say so.
            log.error("routing table %s is invalid, keeping revision %d: %s", path, self._table.revision, exc)
            self._stamp = stamp
            return
        if table.revision >= self._table.revision or force:
            self._table = table
        self._stamp = stamp
