"""The generator gate on real Ray Serve: the Generator replica's process is SIGKILLed; calls are refused at
once (no waiting in the handle's queue for the replacement), and generated answers come back on their own
once Ray Serve's replacement replica passes the readiness probe.

Real parts: a local Ray cluster, Ray Serve, the app's own handle adapter (serving/ray_handles.py), its Generator
health and replica count (serving/ray_replicas.py), a Generator deployment that answers at once (no model: what is tested is the handle, not
the engine)."""

from __future__ import annotations

import pytest

CALLS_BOUND = 600  # bounds a hang only: the loop ends at the first generated answer after a refusal
REPLICA_GONE = {"ActorDiedError", "RayActorError", "ActorUnavailableError"}


@pytest.mark.slow
def test_killed_generator_replica_is_refused_at_once_then_answers_return(tmp_path) -> None:
    import os
    import signal
    import time

    from ray import serve
    from ray_local import serve_cluster

    from finserve.contracts import AdapterRef
    from finserve.serving.degrade.config import GeneratorBreakerConfig
    from finserve.serving.degrade.gated_generator import GatedGenerator, GeneratorGate
    from finserve.serving.errors import GeneratorUnavailable
    from finserve.serving.inference.types import ChatMessage, GenerationRequest, GenerationResult
    from finserve.serving.ray_handles import remote
    from finserve.serving.ray_replicas import DeploymentHealth

    request = GenerationRequest(
        messages=[ChatMessage(role="user", content="hello")], adapter=AdapterRef.base(), max_tokens=4
    )

    # Defined here so Ray pickles them by value: its workers cannot import this test module.
    class Generator:
        async def generate(self, req: GenerationRequest, _otel: object = None) -> GenerationResult:
            return GenerationResult(
                text="generated",
                prompt_tokens=1,
                completion_tokens=1,
                finish_reason="stop",
                adapter=req.adapter,
            )

        async def ready(self) -> bool:
            return True

        def pid(self) -> int:
            return os.getpid()

    class Caller:
        """What the Gateway replica does: the app's handle wrapper behind the pipeline's gate."""

        def __init__(self, generator) -> None:  # noqa: ANN001 - a DeploymentHandle
            self.changes: list[bool] = []
            self.gate = GeneratorGate(
                DeploymentHealth(generator), GeneratorBreakerConfig(probe_interval_s=0.5), self.changes.append
            )
            self.gen = GatedGenerator(remote(generator, Generator), self.gate)

        async def ask(self) -> str:
            try:
                return (await self.gen.generate(request)).text
            except GeneratorUnavailable:
                return "refused"
            except Exception as exc:  # noqa: BLE001 - the test reads the class
                return type(exc).__name__

        def seen(self) -> tuple[list[bool], bool]:
            return self.changes, self.gate.gate.is_open

    with serve_cluster():
        generator = serve.deployment(
            Generator, name="Generator", ray_actor_options={"num_cpus": 0}, health_check_period_s=1
        ).bind()
        caller = serve.run(
            serve.deployment(Caller, name="Caller", ray_actor_options={"num_cpus": 0}).bind(generator),
            name="gate",
            route_prefix=None,
        )
        assert caller.ask.remote().result(timeout_s=120) == "generated"
        pid = serve.get_deployment_handle("Generator", app_name="gate").pid.remote().result(timeout_s=60)
        os.kill(pid, signal.SIGKILL)

        outcomes: list[str] = []
        for _ in range(CALLS_BOUND):
            outcomes.append(caller.ask.remote().result(timeout_s=120))
            if outcomes[-1] == "generated":
                break
            time.sleep(0.2)
        changes, still_open = caller.seen.remote().result(timeout_s=60)

    # While no replica ran, every call was refused (or failed on the dead replica) instead of waiting for the
    # replacement; then the replacement answered without any restart of the caller.
    assert outcomes[-1] == "generated", outcomes
    assert "refused" in outcomes, outcomes
    assert set(outcomes[:-1]) <= {"refused", *REPLICA_GONE}, outcomes
    assert changes == [True, False] and not still_open
