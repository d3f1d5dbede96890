"""The drain loop over a scripted set of Gateway replicas and a fake clock (the Ray Serve broadcast itself runs
in tests/serving/test_e2e_stack.py's drain test): what it asks, when it stops, what it prints."""

from __future__ import annotations

import threading

from fakeclock import FakeClock

from finserve.serving.drain import DrainConfig
from finserve.serving.drain.coordinator import run_drain

CFG = DrainConfig(min_not_ready_s=2, grace_s=10, poll_s=1)
START = FakeClock()()


class Replicas:
    """In-flight counts per look (one list per look; None: nobody answered). Each look moves the clock."""

    def __init__(
        self, clock: FakeClock, looks: list[list[int] | None], on_look=None, deployed: bool = True
    ) -> None:
        self.clock, self.looks, self.on_look = clock, list(looks), on_look
        self.calls: list[str] = []
        self.last_error = "DeploymentUnavailableError: no replica"
        self.deployed = deployed

    def _next(self, name: str) -> list[int] | None:
        self.calls.append(name)
        if self.on_look:
            self.on_look(len(self.calls))
        return self.looks.pop(0) if len(self.looks) > 1 else self.looks[0]

    def start_draining(self) -> list[int] | None:
        if self.calls:  # asked again after the loop's wait
            self.clock.advance(CFG.poll_s)
        return self._next("start_draining")

    def in_flight(self) -> list[int] | None:
        self.clock.advance(CFG.poll_s)  # the loop's wait, as the clock sees it
        return self._next("in_flight")


def _run(looks, forced_at: int | None = None, deployed: bool = True):
    clock = FakeClock()
    forced = threading.Event()
    lines: list[str] = []
    replicas = Replicas(clock, looks, (lambda n: forced.set() if n == forced_at else None), deployed)
    # The loop waits poll_s on the event between looks: a millisecond here; the replicas' reads move the clock.
    cfg = CFG.model_copy(update={"poll_s": 0.001})
    verdict = run_drain(replicas, cfg, forced, lines.append, clock)
    return verdict, replicas.calls, lines, clock() - START


def test_waits_the_not_ready_period_then_for_the_last_request() -> None:
    verdict, calls, lines, elapsed = _run([[2, 1], [1, 1], [1, 0], [0, 0]])
    assert verdict is not None and (verdict.done, verdict.reason) == (True, "idle")
    assert calls[0] == "start_draining" and set(calls[1:]) == {"in_flight"}
    assert elapsed >= CFG.min_not_ready_s
    assert lines[0].startswith("draining: not ready, 3 in flight")
    assert lines[-1] == "drained: nothing in flight"


def test_a_request_that_never_ends_is_cut_at_the_grace() -> None:
    verdict, calls, lines, elapsed = _run([[1]])
    assert verdict is not None and verdict.reason == "grace_over" and verdict.in_flight == 1
    assert elapsed >= CFG.grace_s
    assert len(lines) == 3  # not-ready period, in flight, cut: each printed once, not once per look


def test_a_second_signal_ends_the_wait_at_the_next_look() -> None:
    verdict, calls, lines, _ = _run([[3]], forced_at=2)
    assert verdict is not None and verdict.reason == "forced"
    assert len(calls) == 2


def test_nothing_deployed_means_nothing_to_drain() -> None:
    verdict, calls, lines, _ = _run([None], deployed=False)
    assert verdict is None and calls == ["start_draining"]
    assert lines == ["no Gateway replica answered (DeploymentUnavailableError: no replica): nothing to drain"]


def test_deployed_replicas_that_do_not_answer_are_told_again_until_they_do() -> None:
    # A busy replica misses the first broadcast: not "nothing to drain" (exit 0 with requests still in flight).
    verdict, calls, lines, _ = _run([None, None, [1], [0]])
    assert verdict is not None and verdict.reason == "idle"
    assert calls[:3] == ["start_draining"] * 3 and set(calls[3:]) == {"in_flight"}
    assert lines[0].startswith("the Gateway replicas did not answer")


def test_replicas_that_never_answer_end_at_the_grace_not_as_drained() -> None:
    verdict, calls, _, elapsed = _run([None])
    assert verdict is not None and verdict.reason == "grace_over" and verdict.in_flight is None
    assert set(calls) == {"start_draining"} and elapsed >= CFG.grace_s


def test_first_signal_drains_the_second_stops_at_once() -> None:
    import signal

    from finserve.serving.drain.coordinator import stop_handler

    stop, hurry, said = threading.Event(), threading.Event(), []
    handle = stop_handler(stop, hurry, said.append)
    handle(signal.SIGTERM, None)
    assert stop.is_set() and not hurry.is_set()
    assert said == ["SIGTERM: draining, then shutting down (again to stop at once)"]
    handle(signal.SIGINT, None)
    assert hurry.is_set() and said[-1] == "SIGINT again: stopping now"
