"""The pipeline in one process, without Ray: for `finserve eval`, tests and the operator's e2e.

Same stage classes, same Pipeline, same HTTP app (and gRPC servicer) as the Ray Serve graph (whose
deployments derive from these stage classes); only the hops differ.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from finserve.contracts import AdapterRegistry

from .audit.log import AuditLog
from .config import ServingConfig
from .exposure import start_metrics_listener
from .gateway import create_api
from .guard.engine import PIIGuard
from .inference.builder import build_engine
from .inference.engine import Engine
from .intent import IntentClassifier
from .oip_grpc.health import HealthServicer
from .oip_grpc.server import start_grpc_server
from .oip_grpc.servicer import InferenceServicer
from .paths import registry_root
from .pipeline import Pipeline
from .retrieval import Retriever
from .routing import Router
from .stages import LocalAudit, LocalGenerator, LocalGuard
from .wiring import intent_assets, share_engine_model


@dataclass
class LocalStack:
    pipeline: Pipeline
    generator: LocalGenerator
    retriever: Retriever
    intent: IntentClassifier

    @property
    def engine(self) -> Engine:
        return self.generator.engine

    async def readiness(self) -> dict[str, bool]:
        return {
            "guard": True,
            "retriever": self.retriever.ready(),
            "intent": self.intent.ready(),
            "generator": self.engine.ready(),
            "audit": await self.pipeline.audit.ready(),
        }

    async def start(self) -> None:
        await self.generator.start()
        share_engine_model(self.intent, self.engine)
        await self.pipeline.warm()

    async def stop(self) -> None:
        await self.pipeline.aclose()  # shadows first: they may still be waiting on the engine
        await self.generator.stop()
        self.retriever.close()
        await self.pipeline.audit.close()


def registry_for(config: ServingConfig) -> AdapterRegistry:
    return AdapterRegistry(registry_root(config.generator.registry))


def build_local_stack(config: ServingConfig, *, with_generator: bool = True) -> LocalStack:
    """Every stage in this process. ``with_generator=False`` skips loading the LLM engine's weights
    until start() (evaluation never generates)."""
    retriever = Retriever(config.retrieval)
    intent = IntentClassifier(config.intent, registry_for(config), intent_assets())
    engine = build_engine(config.generator)
    generator = LocalGenerator(engine)
    guard = PIIGuard(config.guard)
    pipeline = Pipeline(
        config,
        guard=LocalGuard(guard),
        retrieval=retriever,
        intent=intent,
        generator=generator,
        # The audit log re-scans what it writes: a second line of defence if a caller ever slips.
        audit=LocalAudit(AuditLog(config.audit, guard=guard)),
        router=Router(config.router),
    )
    stats = getattr(engine, "stats", None)
    if callable(stats):  # engines with figures of their own (slots, tokens) add them to /metrics
        from .inference.engine_metrics import EngineCollector

        pipeline.metrics.registry.register(EngineCollector(config.generator.engine, stats))
    return LocalStack(pipeline=pipeline, generator=generator, retriever=retriever, intent=intent)


def create_local_app(config: ServingConfig, *, grpc_port: int | None = None) -> FastAPI:
    """The HTTP app with every stage in-process; the engine starts with the app's lifespan.

    With ``grpc_port`` (0: any free one) the same pipeline also answers the Open Inference Protocol
    v2 over gRPC on ``gateway.host`` while the app runs; the bound port is ``app.state.grpc_port``.
    """
    stack = build_local_stack(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # noqa: ANN202
        await stack.start()
        server = None
        api.state.metrics = start_metrics_listener(config.exposure, stack.pipeline.metrics.registry)
        try:
            if grpc_port is not None:
                servicer = InferenceServicer(stack.pipeline, stack.readiness)
                server, api.state.grpc_port = await start_grpc_server(
                    servicer, config.gateway.host, grpc_port, HealthServicer(stack.readiness)
                )
            yield
        finally:
            if server is not None:
                await server.stop(grace=None)
            api.state.metrics.stop()
            await stack.stop()

    api = create_api(stack.pipeline, stack.readiness)
    api.router.lifespan_context = lifespan
    return api
