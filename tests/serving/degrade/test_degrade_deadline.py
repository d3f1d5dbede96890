"""The deadline arithmetic (pure): client value clamped to the configured bounds, stage shares within it."""

from __future__ import annotations

import pytest

from finserve.serving.degrade import Deadline, DegradeConfig


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("asked", "budget"), [(None, 30_000), (5, 100), (2_000, 2_000), (10**6, 120_000)])
def test_client_deadline_is_clamped_to_the_bounds(asked, budget) -> None:
    assert Deadline.for_request(DegradeConfig(), asked).budget_ms == budget


def test_stage_share_is_its_cap_within_what_is_left_less_the_reserve() -> None:
    clock = Clock()
    d = Deadline(1_000, start=clock.now, clock=clock)
    assert d.stage_s(300) == pytest.approx(0.3)
    assert d.stage_s(None, reserve_ms=200) == pytest.approx(0.8)
    clock.now += 0.9
    assert d.stage_s(300) == pytest.approx(0.1)
    assert d.stage_s(None, reserve_ms=200) == 0.0
    clock.now += 5
    assert d.remaining_s() == 0.0


def test_bounds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="deadline_min_ms"):
        DegradeConfig(deadline_min_ms=5_000, deadline_max_ms=1_000)


def test_route_policy_overrides_the_default() -> None:
    cfg = DegradeConfig(policy="fallback", route_policy={"strict-model": "error"})
    assert (cfg.policy_for("strict-model"), cfg.policy_for("finserve-banking"), cfg.policy_for(None)) == (
        "error",
        "fallback",
        "fallback",
    )
