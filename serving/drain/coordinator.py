"""The drain's I/O: tell every Gateway replica to drain, then read their in-flight counts until decide() says
the drain is over. `finserve up` runs it on SIGTERM / SIGINT before serve.shutdown()."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from .config import DrainConfig
from .decide import DrainVerdict, decide
from .join import JoinPlan

APP = "finserve"
GATEWAY = "Gateway"


class Gateways(Protocol):
    """Every replica of the Gateway deployment; None where no replica answered."""

    def start_draining(self) -> list[int] | None: ...
    def in_flight(self) -> list[int] | None: ...

    @property
    def deployed(self) -> bool:
        """Whether the Gateway deployment exists (as far as the last look could tell)."""
        ...

    @property
    def last_error(self) -> str | None: ...


class ServeGateways:
    """The Gateway replicas through Ray Serve: DeploymentHandle.broadcast calls a method on every running
    replica (not one picked by the router), outside max_queued_requests.

    The handle lives on an event loop of its own, in a daemon thread: in Ray Serve's throughput-optimized mode
    (our default) a handle routes on the loop it was made in, and the caller here (`finserve up`'s main thread,
    `finserve drain`) has none. The loop runs until the process ends, so serve.shutdown() can still close the
    handle's router on it."""

    def __init__(
        self, app: str = APP, deployment: str = GATEWAY, timeout_s: float = 2.0, first_timeout_s: float = 15.0
    ) -> None:
        self._app, self._deployment = app, deployment
        self._timeout_s, self._first_timeout_s = timeout_s, first_timeout_s
        self._handle: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.last_error: str | None = None  # why the last look got no answer, for the console

    @property
    def deployed(self) -> bool:
        # The handle is only made for a deployed app: a failure after that is a replica's, not an absence.
        return self._handle is not None

    async def _ask(self, method: str, timeout_s: float) -> list[Any]:
        if self._handle is None:  # raises while the app is not deployed (a signal during the start)
            from ray import serve

            self._handle = serve.get_deployment_handle(self._deployment, app_name=self._app)
        response = self._handle.broadcast(method)
        return list(await response.results_async(timeout_s=timeout_s, return_exceptions=True))

    def _broadcast(self, method: str, timeout_s: float) -> list[int] | None:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, name="drain-handle", daemon=True).start()
        try:
            # The first call also waits for the new handle to learn the replica set from the controller.
            future = asyncio.run_coroutine_threadsafe(self._ask(method, timeout_s), self._loop)
            results = future.result(timeout_s + 1)
        except Exception as exc:  # noqa: BLE001 - no replica, or one too busy to answer in time: unknown, asked again
            self.last_error = f"{type(exc).__name__}: {exc}"
            return None
        # A replica that died meanwhile answers with its error: it holds nothing in flight any more.
        counts = [int(r) for r in results if not isinstance(r, BaseException)]
        return counts or None

    def start_draining(self) -> list[int] | None:
        return self._broadcast("start_draining", self._first_timeout_s)

    def in_flight(self) -> list[int] | None:
        return self._broadcast("in_flight", self._timeout_s)


def stop_handler(
    stop: threading.Event, hurry: threading.Event, say: Callable[[str], None]
) -> Callable[[int, object], None]:
    """A SIGTERM / SIGINT handler: the first signal asks for a drained stop (``stop``), the next one for an
    immediate one (``hurry``: the drain ends at its next look), as operators expect of Ctrl-C twice."""

    def handle(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            say(f"{name} again: stopping now")
            hurry.set()
            return
        say(f"{name}: draining, then shutting down (again to stop at once)")
        stop.set()

    return handle


def run_drain(
    gateways: Gateways,
    cfg: DrainConfig,
    forced: threading.Event,
    report: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
) -> DrainVerdict | None:
    """Drains and returns how it ended; None when there was nothing to drain (no Gateway deployment). A deployed
    Gateway whose replicas do not answer is asked again at each look, and counts as in flight until it does.
    ``forced`` (a second signal) ends the wait at the next look; ``report`` gets each new state once."""
    start = clock()
    counts = gateways.start_draining()
    if counts is None and not gateways.deployed:
        report(f"no Gateway replica answered ({gateways.last_error}): nothing to drain")
        return None
    if counts is None:  # deployed, but no replica answered in time: keep telling them until one does
        report(f"the Gateway replicas did not answer ({gateways.last_error}): asking again")
    told = counts is not None
    said = ""
    while True:
        verdict = decide(cfg, clock() - start, counts, forced.is_set())
        line = verdict.describe()
        if line != said:
            report(line)
            said = line
        if verdict.done:
            return verdict
        forced.wait(cfg.poll_s)
        counts = gateways.in_flight() if told else gateways.start_draining()
        told = told or counts is not None


class JoinError(RuntimeError):
    """`finserve drain` could not join the Ray cluster; the message says which and why (no traceback)."""


def token_found(environ: Mapping[str, str], home: Path) -> bool:
    """Whether a Ray auth token is at hand, where Ray's token loader looks for one."""
    if environ.get("RAY_AUTH_TOKEN"):
        return True
    path = environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(path).is_file() if path else (home / ".ray" / "auth_token").is_file()


def drain_cluster(
    cfg: DrainConfig, plan: JoinPlan, forced: threading.Event, report: Callable[[str], None]
) -> DrainVerdict | None:
    """The same drain from outside `finserve up`: a driver joins the running Ray cluster ``plan`` names (the
    RayService head pod's preStop hook, `finserve drain`), drains every Gateway replica, and leaves."""
    os.environ.update(plan.env)
    import ray

    try:
        ray.init(
            address=plan.address,
            namespace="serve",
            log_to_driver=False,
            configure_logging=False,
            logging_level=logging.WARNING,
        )
    except Exception as exc:  # noqa: BLE001 - any refusal (auth, no cluster, a timeout) is reported, not raised
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise JoinError(
            f"cannot join the Ray cluster at {plan.address} ({plan.source}): {type(exc).__name__}: {first}"
        ) from exc
    report(f"joined the Ray cluster at {plan.address} ({plan.source})")
    try:
        return run_drain(ServeGateways(), cfg, forced, report)
    finally:
        ray.shutdown()
