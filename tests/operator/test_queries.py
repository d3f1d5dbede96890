"""PromQL templates: built-ins use the metric names serving exposes, placeholders are filled and
escaped, unknown ones are refused."""

from __future__ import annotations

import pytest

from finserve.contracts import metrics
from finserve.operator.durations import promql_range, seconds
from finserve.operator.queries import (
    BUILTIN_METRICS,
    GPU_UTILIZATION_QUERY,
    PLACEHOLDERS,
    QUEUE_DEPTH_QUERY,
    REQUESTS_QUERY,
    check_template,
    placeholders,
    render,
)

VALUES = {
    "model": "finserve-banking",
    "adapter": "banking77",
    "version": "1.1.0",
    "namespace": "prod",
    "rollout": "bank",
    "interval": "60s",
}


@pytest.mark.parametrize("name", list(BUILTIN_METRICS))
def test_builtins_render_against_the_canary_series(name):
    query = render(BUILTIN_METRICS[name].query, VALUES)
    assert "{{" not in query
    assert 'model="finserve-banking",adapter="banking77",version="1.1.0"' in query
    assert "[60s]" in query or "offset 60s" in query
    assert placeholders(BUILTIN_METRICS[name].query) <= PLACEHOLDERS


def test_builtins_use_the_contract_metric_names():
    assert f"{metrics.REQUESTS_TOTAL}{{" in BUILTIN_METRICS["error-rate"].query
    assert 'code=~"5.."' in BUILTIN_METRICS["error-rate"].query
    assert f"{metrics.REQUEST_DURATION}_bucket" in BUILTIN_METRICS["latency-p95"].query
    assert 'stage="output"' in BUILTIN_METRICS["pii-output"].query
    assert metrics.PII_FINDINGS_TOTAL in BUILTIN_METRICS["pii-output"].query
    assert 'agree="true"' in BUILTIN_METRICS["intent-quality"].query
    assert f"{metrics.TIME_TO_FIRST_TOKEN}_bucket" in BUILTIN_METRICS["ttft-p95"].query
    assert metrics.REQUESTS_TOTAL in REQUESTS_QUERY
    assert metrics.GENERATOR_QUEUE_DEPTH in QUEUE_DEPTH_QUERY
    assert "DCGM_FI_DEV_GPU_UTIL" in GPU_UTILIZATION_QUERY


def test_values_are_escaped_for_promql_strings():
    assert render('x{a="{{ model }}"}', {"model": 'a"b\\c'}) == 'x{a="a\\"b\\\\c"}'


def test_missing_value_and_unknown_placeholder_are_errors():
    with pytest.raises(ValueError, match="no value for placeholder 'cluster'"):
        render("x{{ cluster }}", VALUES)
    with pytest.raises(ValueError, match="unknown placeholder"):
        check_template('sum(x{c="{{ cluster }}"})')
    assert check_template('sum(x{m="{{model}}"})') == 'sum(x{m="{{model}}"})'


@pytest.mark.parametrize(
    ("text", "value"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("1.5m", 90), ("0s", 0)]
)
def test_durations(text, value):
    assert seconds(text) == value


@pytest.mark.parametrize("text", ["", "5", "5 m", "1d", "-1s", "m5"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        seconds(text)


def test_promql_range_is_whole_seconds():
    assert promql_range(60.0) == "60s"
    assert promql_range(0.25) == "1s"


def test_ttft_p95_is_a_builtin_by_name_not_a_default_check() -> None:
    from finserve.operator.queries import DEFAULT_METRICS
    from finserve.operator.spec import MetricCheck

    assert "ttft-p95" in BUILTIN_METRICS and "ttft-p95" not in DEFAULT_METRICS
    assert MetricCheck(name="ttft-p95").bounds() == (None, 2.0)
