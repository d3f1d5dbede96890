"""Runs the Ray Serve graph on a local Ray until told to stop, then leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from typing import Literal

from rich.console import Console

from . import run_record
from .config import ServingConfig
from .drain.coordinator import ServeGateways, run_drain, stop_handler
from .haproxy_procs import haproxy_config_path, remove_node_dir, stop_haproxy
from .oip_grpc import ADD_SERVICER
from .oip_grpc.health import ADD_HEALTH_SERVICER
from .paths import data_dir
from .ray_hardening import single_node_env
from .ray_start import descendant_pids, in_fresh_process, start_with_retry, stop_failed_start
from .serve_env import RAY_WORKER_SETUP_HOOK, haproxy_available, serve_env, usable_ingress


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(cfg: ServingConfig, console: Console, ingest_if_missing: bool) -> None:
    """Work that must happen once, before replicas start: index build and model conversion.

    Each runs in a process of its own (``in_fresh_process``): what they leave loaded makes Ray's start in this
    process fail at random.
    """
    from .inference.base_model import ensure_base_model, is_converted, model_dir
    from .retrieval import index_exists, ingest

    if ingest_if_missing and not index_exists(cfg.retrieval):
        console.print("[cyan]building the retrieval index (first start only)...[/]")
        report = in_fresh_process(ingest, cfg.retrieval)
        console.print(f"[green]index {report.index_version} built[/]")
    # Both CPU engines read the GGUF itself; the intent head reads the LLM's hidden states from the float32
    # folder converted from it (and the engines reuse that folder's tokenizer when it exists).
    if (
        cfg.intent.method == "adapter"
        and cfg.intent.base_model_path is None
        and not is_converted(model_dir())
    ):
        console.print("[cyan]converting the base model into the data dir (first start only)...[/]")
        in_fresh_process(ensure_base_model)


def run_stack(
    cfg: ServingConfig, stop: threading.Event, console: Console, ingest_if_missing: bool = True
) -> int:
    # What an earlier run on this data dir left running when it was killed (its haproxy holds our ports).
    earlier = run_record.reap(data_dir())
    if earlier.stopped:
        console.print(
            f"[yellow]stopped {len(earlier.stopped)} haproxy process(es) an earlier finserve up on this "
            f"data dir left running: {earlier.stopped}[/]"
        )
    elif earlier.running_pid is not None:
        console.print(f"[yellow]another finserve up (pid {earlier.running_pid}) runs on this data dir[/]")
    # Before Ray starts: its controller, ingress and replicas inherit this process's environment.
    deployments, warning = usable_ingress(cfg.deployments, haproxy_available())
    if warning:
        console.print(f"[yellow]{warning}[/]")
        cfg = cfg.model_copy(update={"deployments": deployments})
    # HAProxy's config and admin socket in a folder only this user can enter (mkdtemp: mode 700, short path).
    private = tempfile.mkdtemp(prefix="fs-haproxy-") if cfg.deployments.ingress == "haproxy" else None
    try:
        return _run(cfg, stop, console, ingest_if_missing, private)
    finally:
        if private:
            shutil.rmtree(private, ignore_errors=True)


def _run(
    cfg: ServingConfig, stop: threading.Event, console: Console, ingest_if_missing: bool, private: str | None
) -> int:
    os.environ.update(
        serve_env(cfg.deployments, free_port=_free_port, grpc_host=cfg.gateway.host, haproxy_dir=private)
    )
    os.environ.update(single_node_env())  # Ray core (GCS, raylet, workers) on 127.0.0.1: one local node
    import ray
    from ray import serve

    from .app import build_app

    prepare(cfg, console, ingest_if_missing)
    # Logical CPUs only: stages reserve fractions so the graph fits on a 2-core laptop.
    # No dashboard; the setup hook puts Ray Serve's side listeners on loopback (serving/ray_hardening.py).
    before = descendant_pids()
    start_with_retry(
        lambda: ray.init(
            num_cpus=max(4, os.cpu_count() or 1),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"worker_process_setup_hook": RAY_WORKER_SETUP_HOOK},
            # Ray's metrics agent serves what replicas record (the Generator's engine figures) on this port.
            _metrics_export_port=cfg.exposure.ray_metrics_port,
        ),
        lambda: (ray.shutdown(), stop_failed_start(keep=before)),
        lambda text: console.print(f"[yellow]{text}[/]"),
    )

    # Ray's core worker installs a fatal-signal handler for SIGTERM that aborts the process;
    # ours must come after ray.init so a SIGTERM means "drain, then shut down cleanly". A second one (Ctrl-C
    # twice) ends the drain at once.
    hurry = threading.Event()
    _stop = stop_handler(stop, hurry, lambda line: console.print(f"[yellow]{line}[/]"))
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    node_id = ray.get_runtime_context().get_node_id()
    haproxy_cfg = haproxy_config_path(node_id) if cfg.deployments.ingress == "haproxy" else None
    # Where `finserve drain` on this data dir joins: this cluster, on the terms it was started with.
    run_record.write(
        data_dir(), haproxy_cfg, private, ray.get_runtime_context().gcs_address, _ray_auth_mode()
    )
    try:
        # gRPC: Ray Serve's own proxy (one per node, like HTTP) calls the Gateway's RPC methods.
        serve.start(
            http_options={"host": cfg.gateway.host, "port": cfg.gateway.http_port},
            grpc_options={
                "port": cfg.gateway.grpc_port,
                "grpc_servicer_functions": [ADD_SERVICER, ADD_HEALTH_SERVICER],
            },
        )
        serve.run(build_app(cfg), name="finserve", route_prefix="/", blocking=False)
        url = f"http://{cfg.gateway.host}:{cfg.gateway.http_port}"
        x = cfg.exposure
        metrics = (
            f"GET http://{x.metrics_host}:{x.metrics_port}/metrics"
            if x.metrics_port is not None
            else "no /metrics listener"
        )
        console.print(
            f"[bold green]finserve is up[/] on {url}  (POST {url}/v1/chat/completions, "
            f"GET {url}/readyz; {metrics}); Ctrl-C stops it"
        )
        console.print(
            f"gRPC (Open Inference Protocol v2, inference.GRPCInferenceService) on "
            f"{cfg.gateway.host} port {cfg.gateway.grpc_port}",
            soft_wrap=True,
        )
        if haproxy_cfg:
            console.print(f"HAProxy ingress (config {haproxy_cfg})", soft_wrap=True)
        while not stop.wait(0.5):
            pass
        _drain(cfg, hurry, console)
        return 0
    finally:
        console.print("[yellow]stopping Ray Serve...[/]")
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            if haproxy_cfg:
                _reap_haproxy(haproxy_cfg, node_id, console)
            run_record.clear(data_dir())
            time.sleep(0.2)
        console.print("[green]stopped[/]")


def _ray_auth_mode() -> Literal["token", "disabled"] | None:
    """Ray's token authentication in this process (what the cluster ray.init started uses); None if unknown."""
    try:
        from ray._raylet import (  # type: ignore[attr-defined]  # Ray's private API, no stubs
            AuthenticationMode,
            get_authentication_mode,
        )
    except ImportError:  # a Ray without token authentication
        return None
    return "token" if get_authentication_mode() == AuthenticationMode.TOKEN else "disabled"


def _drain(cfg: ServingConfig, hurry: threading.Event, console: Console) -> None:
    """Every Gateway replica answers not ready, then the requests in flight finish (serving/drain/)."""
    t0 = time.monotonic()
    verdict = run_drain(ServeGateways(), cfg.drain, hurry, lambda line: console.print(f"[yellow]{line}[/]"))
    if verdict is not None:
        console.print(f"[yellow]drain over after {time.monotonic() - t0:.1f} s ({verdict.reason})[/]")


def _reap_haproxy(config_path: str, node_id: str, console: Console) -> None:
    """Ray stops its haproxy in serve.shutdown(); one it missed would outlive us holding the ports.

    Runs after ray.shutdown(), when no Ray process is left to start another one.
    """
    leaked = stop_haproxy(config_path)
    if leaked:
        console.print(f"[yellow]stopped {len(leaked)} haproxy process(es) Ray left running: {leaked}[/]")
    remove_node_dir(config_path, node_id)
