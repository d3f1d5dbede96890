"""grpc.health.v1.Health: what Kubernetes' grpc probe and grpc_health_probe ask. SERVING only when the
same readiness /readyz reports is all true; against the served stack, and against a grpc.aio server
whose readiness function is set by the test (the only way to make a real stack unready on cue)."""

from __future__ import annotations

import inspect

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from finserve.serving.oip_grpc import health as health_mod
from finserve.serving.oip_grpc.health import ADD_HEALTH_SERVICER, HealthServicer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.slow
def test_served_stack_reports_serving_for_the_server_and_the_inference_service(served):
    with grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            assert stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30).status == SERVING
        with pytest.raises(grpc.RpcError) as err:
            stub.Check(
                health_pb2.HealthCheckRequest(service="grpc.reflection.v1.ServerReflection"), timeout=30
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(watch).status == SERVING
        watch.cancel()


class Readiness:
    """The readiness function the stack would pass, with its answer set by the test."""

    def __init__(self) -> None:
        self.stages = {"generator": False, "retriever": True}
        self.fail = False

    async def __call__(self) -> dict[str, bool]:
        if self.fail:
            raise RuntimeError("a stage could not be asked")
        return dict(self.stages)


async def test_not_ready_is_not_serving_and_watch_follows_readiness(monkeypatch):
    monkeypatch.setattr(health_mod, "WATCH_POLL_S", 0.05)
    readiness = Readiness()
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(readiness), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            assert (await stub.Check(health_pb2.HealthCheckRequest())).status == NOT_SERVING
            watch = stub.Watch(health_pb2.HealthCheckRequest())
            assert (await watch.read()).status == NOT_SERVING
            readiness.stages["generator"] = True
            assert (await watch.read()).status == SERVING
            assert (await stub.Check(health_pb2.HealthCheckRequest())).status == SERVING
            readiness.fail = True  # readiness that cannot be read is not ready, never an error
            assert (await watch.read()).status == NOT_SERVING
            assert (await stub.Check(health_pb2.HealthCheckRequest())).status == NOT_SERVING
            watch.cancel()
            unknown = stub.Watch(health_pb2.HealthCheckRequest(service="other"))
            assert (await unknown.read()).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            unknown.cancel()
    finally:
        await server.stop(grace=None)


def test_ray_serve_can_register_the_health_service_and_the_gateway_answers_it():
    # Ray's gRPC proxy imports the servicer functions by path and calls the ingress's methods by RPC
    # name with the keyword grpc_context: the Gateway deployment must have Check and Watch so.
    from ray.serve.config import gRPCOptions

    from finserve.serving.app import Gateway

    (fn,) = gRPCOptions(grpc_servicer_functions=[ADD_HEALTH_SERVICER]).grpc_servicer_func_callable
    assert fn is health_pb2_grpc.add_HealthServicer_to_server
    cls = Gateway
    for name in ("Check", "Watch"):
        method = getattr(cls, name)
        assert method is getattr(HealthServicer, name)
        assert list(inspect.signature(method).parameters) == ["self", "request", "grpc_context"]
    assert inspect.isasyncgenfunction(cls.Watch) and inspect.iscoroutinefunction(cls.Check)


@pytest.mark.slow
def test_ray_serves_grpc_proxy_hosts_the_health_service(tmp_path):
    """Ray Serve's own gRPC proxy, configured as `finserve up` and the chart configure it, answers
    grpc.health.v1 Check by calling the ingress deployment's method: no application metadata needed."""
    from netutil import free_port
    from ray import serve
    from ray_local import serve_cluster

    # Defined here so Ray pickles it by value: its workers cannot import this test module.
    class HealthOnlyIngress(HealthServicer):
        """A Ray Serve ingress with nothing but the health servicer (the Gateway inherits the same class)."""

        def __init__(self) -> None:
            async def ready() -> dict[str, bool]:
                return {"stage": True}

            HealthServicer.__init__(self, ready)

    grpc_port = free_port()
    with serve_cluster({"port": grpc_port, "grpc_servicer_functions": [ADD_HEALTH_SERVICER]}):
        serve.run(
            serve.deployment(HealthOnlyIngress, name="Health", ray_actor_options={"num_cpus": 0}).bind(),
            name="finserve",
            route_prefix="/",
        )
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            # wait_for_ready: on a loaded machine the proxy may still be binding its port when serve.run returns.
            check = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=60, wait_for_ready=True)
            assert check.status == SERVING
            with pytest.raises(grpc.RpcError) as err:
                stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=60)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
