"""When is the drain over: the pure decision, as a table of named cases."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from finserve.serving.config import ServingConfig
from finserve.serving.drain import DrainConfig, decide

CFG = DrainConfig(min_not_ready_s=5, grace_s=25)

CASES = {
    # name: (elapsed_s, in_flight per replica, forced) -> (done, reason, total)
    "idle at once still waits the not-ready period": ((0.0, [0], False), (False, "not_ready_period", 0)),
    "busy inside the not-ready period": ((3.0, [2, 1], False), (False, "not_ready_period", 3)),
    "idle after the not-ready period": ((5.0, [0, 0], False), (True, "idle", 0)),
    "busy after the not-ready period": ((6.0, [0, 3], False), (False, "in_flight", 3)),
    "nobody answered: unknown is not idle": ((6.0, None, False), (False, "unknown", None)),
    "grace over with requests left": ((25.0, [2], False), (True, "grace_over", 2)),
    "grace over, nobody answered": ((30.0, None, False), (True, "grace_over", None)),
    "second signal inside the not-ready period": ((1.0, [4], True), (True, "forced", 4)),
    "second signal while busy": ((10.0, [1], True), (True, "forced", 1)),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_decide(case: str) -> None:
    (elapsed, in_flight, forced), (done, reason, total) = CASES[case]
    verdict = decide(CFG, elapsed, in_flight, forced)
    assert (verdict.done, verdict.reason, verdict.in_flight) == (done, reason, total)


def test_no_not_ready_period_ends_as_soon_as_idle() -> None:
    cfg = DrainConfig(min_not_ready_s=0, grace_s=1)
    assert decide(cfg, 0.0, [0], False).done
    assert not decide(cfg, 0.0, [1], False).done


def test_the_console_line_names_what_it_waits_for() -> None:
    assert decide(CFG, 6.0, [2, 1], False).describe() == "draining: 3 in flight"
    assert "2 in flight cut" in decide(CFG, 25.0, [2], False).describe()
    assert decide(CFG, 5.0, [0], False).describe() == "drained: nothing in flight"


def test_config_is_strict_and_fits_kubernetes_default_grace() -> None:
    cfg = ServingConfig().drain
    assert cfg.min_not_ready_s <= cfg.grace_s < 30  # terminationGracePeriodSeconds' default, minus shutdown
    with pytest.raises(ValidationError, match="min_not_ready_s"):
        DrainConfig(min_not_ready_s=10, grace_s=5)
    with pytest.raises(ValidationError, match="extra"):
        ServingConfig.model_validate({"drain": {"grace": 3}})
    assert all(f.description for f in DrainConfig.model_fields.values())
