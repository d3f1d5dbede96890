"""The haproxy processes one local Ray Serve started, found by their config file, and stopping them.

Ray Serve 2.60's HAProxyManager actor runs ``haproxy -db -f <dir>/<node_id>/haproxy.cfg`` as its child
(ray/serve/_private/haproxy.py). ``serve.shutdown()`` normally kills it, and the raylet (a subreaper)
kills orphans while it lives; but a haproxy whose actor and raylet both ended first (a shutdown that
timed out before ``ray.shutdown()``, a crash) is left to init and keeps the HTTP/gRPC ports. The config
path names the Ray node, so it identifies exactly this stack's haproxy processes (Ray's own
``_is_our_haproxy`` test), never another stack's or anyone else's.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Sequence

import psutil


def haproxy_config_path(node_id: str) -> str:
    """The config file Ray Serve's HAProxyManager writes and passes to haproxy on the node ``node_id``.

    Reads Ray's constant (env RAY_SERVE_HAPROXY_CONFIG_FILE_LOC) and scopes it under the node id the way
    HAProxyManager does, so an override of Ray's default is followed.
    """
    from ray.serve._private.constants import RAY_SERVE_HAPROXY_CONFIG_FILE_LOC

    directory, name = os.path.split(RAY_SERVE_HAPROXY_CONFIG_FILE_LOC)
    return os.path.join(directory, node_id, name)


def started_with(cmdline: Sequence[str], config_path: str) -> bool:
    """Whether a command line is haproxy reading ``config_path`` (``-f PATH``, as Ray starts it)."""
    if not cmdline or os.path.basename(cmdline[0]) != "haproxy":
        return False
    return any(flag == "-f" and value == config_path for flag, value in itertools.pairwise(cmdline))


def haproxy_processes(config_path: str) -> list[psutil.Process]:
    """Running haproxy processes started with ``-f config_path``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if started_with(proc.info["cmdline"] or (), config_path):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def stop_haproxy(config_path: str, grace_s: float = 2.0, term_s: float = 5.0) -> list[int]:
    """Ends every haproxy still running with ``config_path``; returns the pids it had to signal.

    Waits ``grace_s`` for them to go (Ray's own stop may still be under way), then SIGTERM (haproxy's
    hard stop), then SIGKILL after ``term_s``.
    """
    alive = _wait_gone(haproxy_processes(config_path), grace_s)
    signalled = [p.pid for p in alive]
    for proc in alive:
        _signal(proc, terminate=True)
    alive = _wait_gone(alive, term_s)
    for proc in alive:
        _signal(proc, terminate=False)
    _wait_gone(alive, term_s)
    return signalled


def remove_node_dir(config_path: str, node_id: str) -> None:
    """Deletes the per-node folder Ray created for haproxy (config, admin socket, logs), once it is unused."""
    directory = os.path.dirname(config_path)
    # Only the folder named after this node: never Ray's shared parent or a path someone configured.
    if os.path.basename(directory) == node_id:
        shutil.rmtree(directory, ignore_errors=True)


def running(proc: psutil.Process) -> bool:
    """Whether the process still runs; a zombie counts as gone.

    An orphan that exited stays a zombie until init reaps it: it holds no port.
    """
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still running after up to ``timeout`` seconds (psutil reaps our own children)."""
    deadline = time.monotonic() + timeout
    while True:
        psutil.wait_procs(procs, timeout=0)
        alive = [p for p in procs if running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _signal(proc: psutil.Process, terminate: bool) -> None:
    try:
        proc.terminate() if terminate else proc.kill()
    except psutil.NoSuchProcess:
        pass
