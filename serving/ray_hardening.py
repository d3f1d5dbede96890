"""Loopback for the listeners Ray Serve opens beside the ingress ports, applied in every Ray worker process.

Ray Serve 2.60 writes HAProxy's config from a fixed template: its stats page (``bind *:8404``) and
Prometheus exporter (``bind :9101``) listen on every interface, and its admin socket is ``mode 666 level
admin``. Its gRPC servers (the gRPC proxy, the fallback proxy, the Gateway replica's own direct-ingress
server) bind ``[::]``. Ray offers no option for these, so `finserve up` names :func:`apply` as the job's
``worker_process_setup_hook``: it runs in each worker process before any actor there starts (the
HAProxyManager, proxies, replicas) and narrows them:

- HAProxy stats page and Prometheus exporter: 127.0.0.1; admin socket: mode 600 (its folder is private
  too: serve_env.haproxy_paths);
- gRPC servers Ray Serve starts for ingress: the gateway's bind address (``FINSERVE_RAY_GRPC_HOST``),
  as the HTTP ones already are. HAProxy reaches same-node replicas over localhost, so this holds with
  one node, which is where the HAProxy ingress runs (the chart uses the proxy);
- each replica's inter-deployment gRPC server (``[::]:0`` in Ray Serve 2.60, what DeploymentHandles call
  in the throughput-optimized mode): 127.0.0.1, when Ray runs as a single loopback node (below), where
  handles reach replicas at the node's address, 127.0.0.1.

A Ray upgrade that changes the template is caught by tests/serving/test_ray_hardening.py.

Ray core (GCS, raylet, object manager, core workers, agents) binds the node's IP address, which Ray
resolves from the default route even when told ``127.0.0.1`` (``resolve_ip_for_localhost``). Only its
single-node switch, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (the default off Linux), makes the node IP the
loopback address: :func:`single_node_env` sets it for `finserve up`, whose Ray is always one local node.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

GRPC_HOST_ENV = "FINSERVE_RAY_GRPC_HOST"

# Ray's template line -> ours. Each must be found once, or the template changed under us.
TEMPLATE_EDITS = {
    "stats socket {{ config.socket_path }} mode 666 level admin": "stats socket {{ config.socket_path }} mode 600 level admin",
    "bind :{{ config.metrics_port }}": "bind 127.0.0.1:{{ config.metrics_port }}",
    "bind *:{{ config.stats_port }}": "bind 127.0.0.1:{{ config.stats_port }}",
}


# Ray's own switch (ray_constants.ENABLE_RAY_CLUSTER, read at import): off, the node IP is 127.0.0.1.
SINGLE_NODE_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
SINGLE_NODE_ENV = {SINGLE_NODE_SWITCH: "0"}


def single_node_env() -> dict[str, str]:
    """Environment that puts a local single-node Ray's core listeners on loopback (before ``import ray``).

    Nothing outside the host needs them: Serve's ingress binds ``gateway.host`` on its own. A KubeRay
    cluster (several nodes) must not get this; the chart sets it on no Ray container.
    """
    return dict(SINGLE_NODE_ENV)


def harden_template(template: str) -> str:
    """Ray's HAProxy template with the side listeners on loopback and the admin socket private."""
    for old, new in TEMPLATE_EDITS.items():
        if template.count(old) != 1:
            raise ValueError(f"Ray's HAProxy template changed: {old!r} not found once")
        template = template.replace(old, new)
    return template


def grpc_address(address: str, host: str | None) -> str:
    """``[::]:PORT`` (every interface) rebound to ``host``; other addresses, or no host, unchanged."""
    if not host or host in ("0.0.0.0", "::") or not address.startswith("[::]:"):
        return address
    port = address.rsplit(":", 1)[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def apply() -> None:
    """worker_process_setup_hook: patches this worker's Ray Serve before any actor in it starts."""
    if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        from ray.serve._private import haproxy

        haproxy.HAPROXY_CONFIG_TEMPLATE = harden_template(haproxy.HAPROXY_CONFIG_TEMPLATE)
    if os.environ.get(SINGLE_NODE_SWITCH) == "0":
        from ray.serve._private import replica

        original_port = replica.add_port_to_grpc_server

        def add_port_to_grpc_server(server, address: str):  # noqa: ANN001, ANN202 - Ray's own signature
            return original_port(server, grpc_address(address, "127.0.0.1"))

        replica.add_port_to_grpc_server = add_port_to_grpc_server
    host = os.environ.get(GRPC_HOST_ENV)
    if host:
        from ray.serve._private import default_impl

        original = default_impl.add_grpc_address

        def add_grpc_address(server, address: str):  # noqa: ANN001, ANN202 - Ray's own signature
            return original(server, grpc_address(address, host))

        default_impl.add_grpc_address = add_grpc_address
