"""The Ray Serve graph: one deployment per stage, composed with DeploymentHandles.

``build_app(args)`` is the builder RayService's serveConfigV2 names
(``import_path: finserve.serving.app:build_app``, ``args``: a ServingConfig as a dict) and what
``finserve up`` runs locally. Configs cross process boundaries as plain dicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, cast

from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from finserve.contracts import AdapterRef, AdapterRegistry

from .audit.log import AuditConfig, AuditLog
from .config import ServingConfig, StageResources
from .drain import DrainConfig, DrainState
from .exposure import start_metrics_listener
from .gateway import create_api
from .guard.config import GuardConfig
from .inference.builder import build_engine
from .inference.config import GeneratorConfig
from .intent import HeadScores, IntentConfig
from .oip_grpc.health import HealthServicer
from .oip_grpc.servicer import InferenceServicer
from .paths import registry_root
from .pipeline import Pipeline
from .ray_handles import remote
from .ray_replicas import DeploymentHealth
from .retrieval import RetrievalConfig, Retriever
from .routing import Router
from .scan_only import guard_runs_on_torch
from .scan_only import without as scan_only_imports
from .settings import with_env
from .stages import AuditStage, LocalAudit, LocalGenerator, LocalGuard, RetrievalStage
from .telemetry import setup_process, traced
from .telemetry.engine_export import EngineMetricsExporter
from .wiring import build_intent_classifier, share_engine_model

if TYPE_CHECKING:
    from .guard.engine import PIIGuard


def pii_guard(config: GuardConfig, *, scan_only: bool = False) -> PIIGuard:
    """A guard for this replica. Presidio and spaCy are imported here, not with this module: every replica
    imports it (Ray finds each deployment's class in it), and only those that scan need them (~180 MB).
    ``scan_only``: this replica runs no model, so the guard's libraries import without torch and transformers
    (scan_only.py: ~320 MB less), unless its spaCy pipeline runs on torch."""
    lean = scan_only and not guard_runs_on_torch(config)
    with scan_only_imports() if lean else contextlib.nullcontext():
        from .guard.engine import PIIGuard

        return PIIGuard(config)


log = logging.getLogger(__name__)

# Each deployment is the stage class the in-process path uses (stages.py, or the retriever itself) plus
# what a replica needs: its process setup, its config from a plain dict, a span per hot method (@traced:
# it takes the caller's trace context), readiness. The gateway reaches each through ray_handles.remote.


class GuardDeployment(LocalGuard):
    def __init__(self, config: dict[str, Any]) -> None:
        setup_process("finserve-guard")
        # In a worker thread, as Ray Serve ran the sync methods this replica had before: its loop stays free.
        super().__init__(pii_guard(GuardConfig.model_validate(config), scan_only=True), in_thread=True)

    scan_many = traced("finserve.guard.scan_many")(LocalGuard.scan_many)
    scan_chunks = traced("finserve.guard.scan_chunks")(LocalGuard.scan_chunks)

    def ready(self) -> bool:
        return True


class RetrieverDeployment(Retriever):
    def __init__(self, config: dict[str, Any]) -> None:
        setup_process("finserve-retriever")
        super().__init__(RetrievalConfig.model_validate(config))

    search = traced("finserve.retriever.search")(Retriever.search)


class GeneratorDeployment(LocalGenerator):
    """The LLM engine and the intent classifier share a replica: both are per-adapter models."""

    def __init__(self, generator: dict[str, Any], intent: dict[str, Any]) -> None:
        setup_process("finserve-generator")
        gen_config = GeneratorConfig.model_validate(generator)
        super().__init__(build_engine(gen_config))  # started by the first call (LocalGenerator.start)
        self.intent = build_intent_classifier(
            IntentConfig.model_validate(intent), AdapterRegistry(registry_root(gen_config.registry))
        )
        self._exporting: asyncio.Task[None] | None = None
        self._engine_name = gen_config.engine

    async def start(self) -> None:
        if self._started:  # every head_scores call comes through here: nothing more to do once started
            return
        await super().start()
        share_engine_model(self.intent, self.engine)  # before any head loads: heads wait for start
        self._export_engine_metrics()

    def _export_engine_metrics(self) -> None:
        # Engines with figures of their own export them through Ray's metrics agent (this process has no
        # /metrics listener): telemetry/engine_export.py.
        stats = getattr(self.engine, "stats", None)
        if callable(stats) and self._exporting is None:
            try:
                exporter = EngineMetricsExporter(self._engine_name, stats)
            except Exception:  # noqa: BLE001 - figures are best effort: never a reason not to serve
                log.warning("engine metrics are not exported from this replica", exc_info=True)
                return
            self._exporting = asyncio.get_running_loop().create_task(exporter.run())

    generate = traced("finserve.generator.generate")(LocalGenerator.generate)
    stream = traced("finserve.generator.stream")(LocalGenerator.stream)

    @traced("finserve.generator.head_scores")
    async def head_scores(self, masked_text: str, adapter: AdapterRef) -> HeadScores | None:
        await self.start()  # the heads may read the engine's model (share_engine_model)
        return await self.intent.head_scores(masked_text, adapter)

    async def ready(self) -> bool:
        await self.start()
        return self.engine.ready() and self.intent.ready()

    def queue_depth(self) -> int:
        return self.engine.queue_depth()


class AuditDeployment(LocalAudit):
    """One replica: the hash chain has one writer (the file lock also guards other processes)."""

    def __init__(self, config: dict[str, Any], guard: dict[str, Any]) -> None:
        setup_process("finserve-audit")
        # The audit log re-scans what it writes: a second line of defence if a caller ever slips.
        super().__init__(
            AuditLog(
                AuditConfig.model_validate(config),
                guard=pii_guard(GuardConfig.model_validate(guard), scan_only=True),
            )
        )

    append = traced("finserve.audit.append")(LocalAudit.append)

    async def close(self) -> None:
        """Nothing, over a handle: gateways share this log, so none of them seals it; Ray stops the replica."""

    def __del__(self) -> None:
        # Ray Serve calls __del__ when it stops a replica: seal the log with a final checkpoint.
        self.log.close()


# One deployment is both ingresses: HTTP through the late-bound ASGI app, and gRPC because Ray
# Serve's gRPC proxy calls the ingress's methods by RPC name (ModelInfer, ..., and grpc.health.v1's
# Check / Watch), inherited here.
@serve.ingress()
class Gateway(InferenceServicer, HealthServicer):
    def __init__(
        self,
        config: dict[str, Any],
        guard: DeploymentHandle | None,
        retriever: DeploymentHandle | None,
        generator: DeploymentHandle,
        audit: DeploymentHandle | None,
    ) -> None:
        cfg = ServingConfig.model_validate(config)
        self._handles = {"generator": generator}
        self._local_audit: LocalAudit | None = None
        self._local_retriever: Retriever | None = None
        if retriever is not None:
            self._handles["retriever"] = retriever
            retrieval: RetrievalStage = remote(retriever, RetrieverDeployment)
        else:  # retrieval_placement "gateway": embedded and searched in this replica, no Ray hop
            self._local_retriever = retrieval = Retriever(cfg.retrieval)
        if guard is not None:
            self._handles["guard"] = guard
        # Without a retriever in this replica nothing here runs a model (its embedder may run on torch).
        local_guard = (
            pii_guard(cfg.guard, scan_only=retriever is not None) if guard is None or audit is None else None
        )
        # local_guard is built whenever guard is None
        stage = (
            remote(guard, GuardDeployment) if guard is not None else LocalGuard(cast("PIIGuard", local_guard))
        )
        if audit is not None:
            self._handles["audit"] = audit
            audit_stage: AuditStage = remote(audit, AuditDeployment)
        else:  # audit_placement "gateway": appended here, re-scanned by this replica's guard
            audit_stage = LocalAudit(AuditLog(cfg.audit, guard=local_guard))
            self._local_audit = audit_stage
        gen = remote(generator, GeneratorDeployment)
        self.pipeline = Pipeline(
            cfg,
            guard=stage,
            retrieval=retrieval,
            intent=gen,
            generator=gen,
            audit=audit_stage,
            router=Router(cfg.router),
            generator_health=DeploymentHealth(generator),
        )
        # Every probe reads readiness through the drain flag: not ready as soon as the shutdown starts draining.
        self._drain = DrainState()
        probe = self._drain.gate(self.readiness)
        InferenceServicer.__init__(self, self.pipeline, probe)
        self._metrics = start_metrics_listener(
            cfg.exposure, self.pipeline.metrics.registry
        )  # loopback default
        HealthServicer.__init__(self, probe)
        # Ray Serve builds the replica inside its event loop: warm the context guard's cache beside it.
        self._warming = asyncio.get_running_loop().create_task(self.pipeline.warm())

    async def readiness(self) -> dict[str, bool]:
        out: dict[str, bool] = {}
        if self._local_retriever is not None:
            out["retriever"] = await asyncio.to_thread(self._local_retriever.ready)
        if self._local_audit is not None:
            out["audit"] = await self._local_audit.ready()
        for name, handle in self._handles.items():
            try:
                out[name] = bool(await handle.ready.remote())
            except Exception:  # noqa: BLE001 - a stage that can't answer is simply not ready
                out[name] = False
        return out

    # ---- graceful shutdown (serving/drain/): called on every replica with DeploymentHandle.broadcast ----

    # async: they run on the replica's event loop, the only one that touches the drain state.
    async def start_draining(self) -> int:
        """Readiness false from now on, requests still served; returns the requests in flight here."""
        return self._drain.start()

    async def in_flight(self) -> int:
        return self._drain.in_flight

    async def ModelInfer(self, request: Any, grpc_context: Any) -> Any:  # noqa: N802 - the gRPC method's name
        # HTTP is counted by the ASGI middleware; a gRPC inference call here (Ray calls it by name, with
        # the keyword grpc_context). Probes (Check, ServerReady, ...) are not counted.
        with self._drain.track():
            return await InferenceServicer.ModelInfer(self, request, grpc_context)

    async def __del__(self) -> None:
        # Ray Serve's ingress wrapper awaits this when it stops the replica: cancel the shadows still
        # running, then seal a log this replica writes itself.
        pipeline = getattr(self, "pipeline", None)
        if pipeline is not None:
            await pipeline.aclose()
        if getattr(self, "_local_audit", None) is not None:
            self._local_audit.log.close()
        if getattr(self, "_metrics", None) is not None:
            self._metrics.stop()

    def __serve_build_asgi_app__(self):  # noqa: ANN204 - Ray Serve's late-bound ASGI hook
        return create_api(self.pipeline, self._drain.gate(self.readiness), self._drain)


def _options(res: StageResources) -> dict[str, Any]:
    return {
        "num_replicas": res.num_replicas,
        "max_ongoing_requests": res.max_ongoing_requests,
        "max_queued_requests": res.max_queued_requests,
        "ray_actor_options": {"num_cpus": res.num_cpus, "num_gpus": res.num_gpus},
    }


def gateway_shutdown_options(drain: DrainConfig) -> dict[str, float]:
    """How long Ray Serve lets a Gateway replica it stops (rolling update, downscale, serve.shutdown) finish its
    requests: the drain's grace, checked every poll; Ray's defaults are 20 s and 2 s."""
    return {"graceful_shutdown_timeout_s": drain.grace_s, "graceful_shutdown_wait_loop_s": drain.poll_s}


def build_app(args: dict[str, Any] | ServingConfig | None = None) -> Application:
    """ServingConfig (or its dict form) -> the bound Ray Serve application.

    A dict is the RayService's ``args`` (the chart's serving.yaml): the environment's FINSERVE_<SECTION>__<FIELD>
    overrides go on top here, in the process that builds the app, as `finserve up` lays them over its file;
    the replicas then receive the resolved config. A ServingConfig already has them (load_serving_config)."""
    cfg = args if isinstance(args, ServingConfig) else with_env(args or {})
    d = cfg.deployments
    guard = None
    if d.guard_placement == "deployment":
        guard = serve.deployment(GuardDeployment, name="Guard", **_options(d.guard)).bind(
            cfg.guard.model_dump(mode="json")
        )
    retriever = None
    if d.retrieval_placement == "deployment":
        retriever = serve.deployment(RetrieverDeployment, name="Retriever", **_options(d.retriever)).bind(
            cfg.retrieval.model_dump(mode="json")
        )
    elif d.gateway.num_replicas > 1 and not cfg.retrieval.milvus_uri:
        raise ValueError(
            "retrieval_placement 'gateway' with Milvus Lite allows one gateway replica (one process "
            "opens the file): set retrieval.milvus_uri or retrieval_placement 'deployment'"
        )
    generator = serve.deployment(GeneratorDeployment, name="Generator", **_options(d.generator)).bind(
        cfg.generator.model_dump(mode="json"), cfg.intent.model_dump(mode="json")
    )
    audit = None
    if d.audit_placement == "deployment":
        audit = serve.deployment(AuditDeployment, name="Audit", **_options(d.audit)).bind(
            cfg.audit.model_dump(mode="json"), cfg.guard.model_dump(mode="json")
        )
    gateway_options: dict[str, Any] = {**_options(d.gateway), **gateway_shutdown_options(cfg.drain)}
    gateway = serve.deployment(Gateway, name="Gateway", **gateway_options)
    return gateway.bind(cfg.model_dump(mode="json"), guard, retriever, generator, audit)
