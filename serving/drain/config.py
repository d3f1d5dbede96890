"""How long a stopping stack stays up to drain, and how often it looks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from finserve.contracts import StrictModel


class DrainConfig(StrictModel):
    """On SIGTERM / SIGINT: readiness goes false on every Gateway replica, requests already sent are answered,
    then the stack stops. The defaults fit Kubernetes' default terminationGracePeriodSeconds (30 s): at most
    15 s of drain, then Ray Serve's shutdown (11.7 s measured with the HAProxy ingress, docs/reliability.md)."""

    min_not_ready_s: float = Field(
        5.0,
        ge=0,
        description="Seconds every Gateway replica answers not ready (/readyz 503 with draining: true, gRPC health "
        "NOT_SERVING, OIP ServerReady false) before the stack may stop, while it still serves whatever arrives: "
        "time for readiness probes, Kubernetes endpoints and load balancers to stop sending new requests.",
    )
    grace_s: float = Field(
        15.0,
        gt=0,
        description="Most seconds from the signal until the shutdown starts whatever is still in flight (those "
        "requests are then cut). Keep it about 15 s under the pod's terminationGracePeriodSeconds (Ray Serve's "
        "shutdown follows); it is also the Gateway deployment's graceful_shutdown_timeout_s. A second SIGTERM / SIGINT skips the wait.",
    )
    poll_s: float = Field(
        0.25,
        gt=0,
        le=5,
        description="Seconds between two reads of the Gateway replicas' in-flight counts while draining (and the "
        "Gateway deployment's graceful_shutdown_wait_loop_s).",
    )

    @model_validator(mode="after")
    def _min_within_grace(self) -> DrainConfig:
        if self.min_not_ready_s > self.grace_s:
            raise ValueError("drain.min_not_ready_s must not exceed drain.grace_s")
        return self


class _DrainSection(StrictModel):
    """The one section of the serving config `finserve drain` reads (for its FINSERVE_DRAIN__* overrides)."""

    drain: DrainConfig = Field(default_factory=DrainConfig, description="The drain section.")


def load_drain_config(path: str | None, environ: Mapping[str, str]) -> DrainConfig:
    """The ``drain`` section of the serving config file ``path`` (or FINSERVE_CONFIG; defaults without either),
    with the environment's FINSERVE_DRAIN__* overrides, as `finserve up` would read it. Only this section:
    the whole config pulls in every stage's package (Presidio alone takes seconds to import), and a preStop
    hook's seconds come out of the pod's grace period."""
    import yaml

    from finserve.contracts.settings import merge, overrides_reader, read_overrides

    path = path or environ.get("FINSERVE_CONFIG") or None
    data: dict[str, Any] = {}
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            data = (yaml.safe_load(fh) or {}).get("drain") or {}
    # A copy: read_overrides swaps os.environ for the mapping it is given, which may be os.environ itself.
    over = read_overrides(overrides_reader(_DrainSection, "FINSERVE_"), dict(environ)).get("drain", {})
    return DrainConfig.model_validate(merge(data, over))
