"""One canary check: readings in, a verdict out (Successful, Failed, Inconclusive or Error)."""

from __future__ import annotations

from dataclasses import dataclass

from ..spec import Analysis, MetricCheck
from ..status import MetricResult, Outcome
from .observations import AnalysisObservation, Reading

# Which verdict wins when metrics disagree: evidence of failure counts even while another source
# is down; a down source stops a verdict of success; no data only delays one.
_PRECEDENCE = (Outcome.FAILED, Outcome.ERROR, Outcome.INCONCLUSIVE, Outcome.SUCCESSFUL)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    requests: float | None
    metrics: list[MetricResult]
    message: str


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def judge_metric(check: MetricCheck, reading: Reading | None) -> MetricResult:
    """One metric against its bounds."""
    if reading is None or reading.error is not None:
        why = reading.error if reading is not None else "not measured"
        return MetricResult(name=check.name, outcome=Outcome.ERROR, message=f"metric source error: {why}")
    if reading.value is None:
        outcome = Outcome.FAILED if check.on_no_data == "fail" else Outcome.INCONCLUSIVE
        return MetricResult(name=check.name, outcome=outcome, message="no data")
    lo, hi = check.bounds()
    value = reading.value
    if lo is not None and value < lo:
        return MetricResult(
            name=check.name, value=value, outcome=Outcome.FAILED, message=f"{_fmt(value)} < min {_fmt(lo)}"
        )
    if hi is not None and value > hi:
        return MetricResult(
            name=check.name, value=value, outcome=Outcome.FAILED, message=f"{_fmt(value)} > max {_fmt(hi)}"
        )
    bounds = " ".join(
        p
        for p in (f"min {_fmt(lo)}" if lo is not None else "", f"max {_fmt(hi)}" if hi is not None else "")
        if p
    )
    return MetricResult(
        name=check.name, value=value, outcome=Outcome.SUCCESSFUL, message=f"{_fmt(value)} within {bounds}"
    )


def evaluate(analysis: Analysis, obs: AnalysisObservation) -> Verdict:
    """Judge every metric, then the check: the sample-size guard can only soften a verdict."""
    results = [judge_metric(check, obs.metrics.get(check.name)) for check in analysis.metrics]
    requests = obs.requests
    if requests.error is not None:
        return Verdict(Outcome.ERROR, None, results, f"request count unavailable: {requests.error}")
    count = requests.value or 0.0
    if count < analysis.min_requests:
        # Too few requests to blame the canary for anything: wait for more traffic.
        return Verdict(
            Outcome.INCONCLUSIVE,
            requests.value,
            results,
            f"{_fmt(count)} requests < minRequests {analysis.min_requests}",
        )
    outcome = next(o for o in _PRECEDENCE if any(r.outcome == o for r in results) or o == Outcome.SUCCESSFUL)
    named = [
        f"{r.name} {r.message}" for r in results if r.outcome == outcome and outcome != Outcome.SUCCESSFUL
    ]
    message = "; ".join(named) if named else f"all {len(results)} metrics within bounds"
    return Verdict(outcome, requests.value, results, message)


def evidence(results: list[MetricResult]) -> str:
    """Metric values and verdicts in one line, for Events."""
    parts = []
    for r in results:
        value = "no data" if r.value is None else _fmt(r.value)
        parts.append(f"{r.name}={value} ({r.outcome.value}: {r.message})")
    return "; ".join(parts)
