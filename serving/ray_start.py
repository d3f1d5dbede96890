"""Starts the local Ray node for `finserve up`, once more when Ray's own fixed startup waits run out.

Ray waits a hard-coded 30 s for its raylet to register with the GCS and a fixed time for the GCS to write its
port file (neither is configurable). A loaded 2-core node (a CI machine, a busy laptop, a container starting
beside others) sometimes misses one of them although nothing is wrong; a second start then succeeds. Any
other failure, or the same timeout twice, is raised as it is.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import psutil

T = TypeVar("T")

# Substrings of the exceptions Ray raises when those waits run out (ray/_private/node.py, services.py).
STARTUP_TIMEOUTS = ("timed out during startup", "Timed out waiting for file")


def is_startup_timeout(exc: BaseException) -> bool:
    """True when ``exc`` is one of Ray's fixed startup waits running out, which a second start can cure."""
    return any(marker in str(exc) for marker in STARTUP_TIMEOUTS)


def start_with_retry(
    init: Callable[[], Any], shutdown: Callable[[], Any], say: Callable[[str], Any], attempts: int = 2
) -> None:
    """Calls ``init`` up to ``attempts`` times while it fails with a startup timeout, ``shutdown`` between."""
    for attempt in range(1, attempts + 1):
        try:
            init()
            return
        except Exception as exc:
            if attempt == attempts or not is_startup_timeout(exc):
                raise
            say(
                f"Ray's node did not start in time ({exc}); the machine is probably busy: starting it once more"
            )
            shutdown()


def in_fresh_process(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a newly spawned Python process: its result, or its exception raised here.

    For heavy work before ``ray.init`` (the index build, the model conversion). Done in the process that then
    starts Ray, it leaves gRPC (Milvus Lite's client), torch and tokenizer thread pools behind, and the raylet
    that process starts next aborts at random before it registers (SIGABRT after "epoll_wait error: Bad file
    descriptor"; 3 of 4 first starts in the serving image after an in-process index build, 0 of 6 with the
    build in its own process). ``fn`` and its arguments must pickle; output goes where this process's goes.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# What a head node's start runs as this process's descendants: the two daemons (native binaries) and Ray's
# Python helpers (log monitor, reaper, agents), which all run from the ray package.
_RAY_DAEMONS = ("gcs_server", "raylet")


def _is_ray_process(proc: psutil.Process) -> bool:
    try:
        cmdline = " ".join(proc.cmdline())
        return proc.name() in _RAY_DAEMONS or "/ray/" in cmdline
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def descendant_pids() -> set[int]:
    """This process's descendants now: what ``stop_failed_start`` must leave alone."""
    return {p.pid for p in psutil.Process().children(recursive=True)}


def stop_failed_start(keep: set[int], timeout_s: float = 10.0) -> list[int]:
    """Stops the Ray processes a failed ``ray.init`` left running under this process; their pids.

    When the node start times out, ``ray.init`` raises before it keeps a handle on the GCS and raylet it started,
    so ``ray.shutdown`` cannot stop them; they would hold their ports and CPU beside the second start.
    Only this process's own descendants that were not in ``keep`` (taken before the start) are touched: never
    another user's Ray, nor one this process ran before.
    """
    procs = [p for p in psutil.Process().children(recursive=True) if p.pid not in keep and _is_ray_process(p)]
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    return [p.pid for p in procs]
