"""The generator gate's decisions (pure, fake clock): which errors open it, what it admits, when it probes
and closes. The errors are Ray's own exception classes, raised as Ray Serve hands them to a caller."""

from __future__ import annotations

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError
from ray.serve.exceptions import BackPressureError, RayServeException

from finserve.serving.degrade.gate import StageGate, replica_gone
from finserve.serving.errors import DeadlineExceeded, GeneratorUnavailable, map_error


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def _wrapped_by_serve() -> RayServeException:
    try:
        try:
            raise ActorDiedError()
        except ActorDiedError as inner:
            raise RayServeException("upstream actor died") from inner
    except RayServeException as outer:
        return outer


@pytest.mark.parametrize(
    ("exc", "gone"),
    [
        (ActorDiedError(), True),
        (ActorUnavailableError("connection refused", None), True),
        (_wrapped_by_serve(), True),
        (RayTaskError("generate", "tb", ActorDiedError()), True),
        (BackPressureError(num_queued_requests=4, max_queued_requests=4), False),  # full queue: already fast
        (DeadlineExceeded("generate"), False),  # slow is not gone
        (RuntimeError("engine failed"), False),
        (TimeoutError(), False),
    ],
    ids=[
        "died",
        "unavailable",
        "serve-wrapped",
        "task-wrapped",
        "backpressure",
        "deadline",
        "other",
        "timeout",
    ],
)
def test_only_a_dead_or_unreachable_replica_counts(exc: BaseException, gone: bool) -> None:
    assert replica_gone(exc) is gone


def test_closed_gate_admits_until_a_replica_dies_then_refuses() -> None:
    gate = StageGate(1.0, Clock())
    assert gate.admit(1) == (True, False)
    assert gate.admit(None) == (True, False)  # the handle cannot tell: admitted
    assert gate.failed(RuntimeError("engine failed")) is False and not gate.is_open
    assert gate.failed(ActorDiedError()) is True and gate.is_open
    assert gate.failed(ActorDiedError()) is False  # already open: opened once
    assert gate.admit(1) == (
        False,
        False,
    )  # a replica listed again is not proof it answers: the probe decides


def test_no_running_replica_opens_the_gate_before_the_call_would_queue() -> None:
    gate = StageGate(1.0, Clock())
    assert gate.admit(0) == (False, True)
    assert gate.admit(0) == (False, False)


def test_a_waiting_call_that_finds_no_replica_left_opens_the_gate_once() -> None:
    gate = StageGate(1.0, Clock())
    assert gate.no_replica() is True and gate.is_open
    assert gate.no_replica() is False


def test_probes_start_at_once_one_at_a_time_then_every_interval_until_one_passes() -> None:
    clock = Clock()
    gate = StageGate(2.0, clock)
    assert gate.probe_wait_s() is None  # closed: nothing to probe
    gate.failed(ActorDiedError())
    assert gate.probe_wait_s() == 0.0
    gate.probe_started()
    assert gate.probe_wait_s() is None  # one probe at a time
    clock.now += 0.5
    assert gate.probe_finished(False) is False
    assert gate.probe_wait_s() == pytest.approx(2.0)
    clock.now += 2.0
    assert gate.probe_wait_s() == 0.0
    gate.probe_started()
    clock.now += 3.0
    assert gate.open_for_s() == pytest.approx(5.5)
    assert gate.probe_finished(True) is True and not gate.is_open
    assert gate.admit(1) == (True, False) and gate.open_for_s() == 0.0
    assert gate.last_open_s == pytest.approx(5.5)


def test_a_call_that_answers_closes_the_gate_and_a_late_probe_then_changes_nothing() -> None:
    gate = StageGate(1.0, Clock())
    gate.failed(ActorDiedError())
    gate.probe_started()
    assert gate.succeeded() is True and not gate.is_open
    assert gate.probe_finished(True) is False  # already closed by the answer
    assert gate.succeeded() is False


def test_refusal_is_a_503_with_retry_after_that_the_fallback_may_answer() -> None:
    from finserve.serving.degrade import degradable

    mapped = map_error(GeneratorUnavailable(retry_after=2))
    assert (mapped.status, mapped.code, mapped.retry_after) == (503, "generator_unavailable", 2)
    assert degradable(GeneratorUnavailable())
