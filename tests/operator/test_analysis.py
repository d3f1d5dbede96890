"""One canary check: each metric against its bounds, then the sample guard and the precedence of
outcomes (Failed > Error > Inconclusive > Successful)."""

from __future__ import annotations

import pytest
from mro_testkit import readings

from finserve.operator.core.analysis import evaluate, judge_metric
from finserve.operator.core.observations import Reading
from finserve.operator.spec import Analysis, MetricCheck
from finserve.operator.status import Outcome

CUSTOM = MetricCheck(name="refusal-rate", query="sum(x)", min=0.01, max=0.2)


@pytest.mark.parametrize(
    ("check", "reading", "outcome", "message"),
    [
        (CUSTOM, Reading(value=0.1), Outcome.SUCCESSFUL, "0.1 within min 0.01 max 0.2"),
        (CUSTOM, Reading(value=0.2), Outcome.SUCCESSFUL, "within"),  # bounds are inclusive
        (CUSTOM, Reading(value=0.25), Outcome.FAILED, "0.25 > max 0.2"),
        (CUSTOM, Reading(value=0.001), Outcome.FAILED, "0.001 < min 0.01"),
        (CUSTOM, Reading(), Outcome.INCONCLUSIVE, "no data"),
        (CUSTOM.model_copy(update={"on_no_data": "fail"}), Reading(), Outcome.FAILED, "no data"),
        (CUSTOM, Reading(error="timeout"), Outcome.ERROR, "metric source error: timeout"),
        (CUSTOM, None, Outcome.ERROR, "not measured"),
        (MetricCheck(name="pii-output"), Reading(value=1.0), Outcome.FAILED, "1 > max 0"),
        (MetricCheck(name="intent-quality"), Reading(value=0.85), Outcome.FAILED, "0.85 < min 0.9"),
        (MetricCheck(name="error-rate", max=0.5), Reading(value=0.3), Outcome.SUCCESSFUL, "max 0.5"),
    ],
    ids=[
        "inside",
        "on the bound",
        "above max",
        "below min",
        "no data waits",
        "no data fails",
        "source error",
        "missing reading",
        "any PII finding fails",
        "built-in min",
        "user bound overrides",
    ],
)
def test_judge_metric(check, reading, outcome, message):
    result = judge_metric(check, reading)
    assert result.outcome == outcome
    assert message in result.message


@pytest.mark.parametrize(
    ("obs", "outcome"),
    [
        (readings(), Outcome.SUCCESSFUL),
        (readings(error_rate=0.2), Outcome.FAILED),
        (readings(requests=19, error_rate=0.9), Outcome.INCONCLUSIVE),
        (readings(requests=None), Outcome.INCONCLUSIVE),
        (readings(requests="prometheus unreachable", error_rate=0.9), Outcome.ERROR),
        (readings(latency_p95="bad query"), Outcome.ERROR),
        (readings(latency_p95="bad query", pii_output=2.0), Outcome.FAILED),
        (readings(intent_quality=None), Outcome.INCONCLUSIVE),
        (readings(intent_quality=None, error_rate=0.5), Outcome.FAILED),
    ],
    ids=[
        "all healthy",
        "one out of bounds",
        "below minRequests",
        "no request data",
        "request count down",
        "one source down",
        "failure beats a down source",
        "no data waits",
        "failure beats no data",
    ],
)
def test_evaluate(obs, outcome):
    assert evaluate(Analysis(), obs).outcome == outcome


def test_the_guard_reports_the_sample_size():
    verdict = evaluate(Analysis(min_requests=50), readings(requests=12.0))
    assert verdict.requests == 12.0
    assert verdict.message == "12 requests < minRequests 50"
    assert len(verdict.metrics) == 4  # metrics are still judged, for the record
