"""The evaluation gate, pure: an evaluation Job's observed state in, a verdict out.

Successful: every check holds. Failed: a margin or bound is missed (the canary's answers are worse).
Error: the Job failed, timed out or left no usable report, or the report lacks a figure a check
needs; never a pass, and what follows is the spec's ``onError`` policy, not the canary's blame.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from finserve.contracts.evaluation import LOWER_IS_BETTER, AnswerEvalReport

from ..spec import Evaluation, GateCheck
from ..status import EvaluationStatus, GateCheckResult, Outcome
from .observations import JobObservation

TIMEOUT_GRACE = 60.0
"""Seconds past the timeout before the operator's own clock calls a Job timed out (the Job's
activeDeadlineSeconds normally fires first; this covers a Job that never started or vanished)."""

_EPS = 1e-9  # shares such as 0.835 - 0.005 are not exact in binary


@dataclass(frozen=True)
class GateVerdict:
    outcome: Outcome | None  # None: still running
    message: str
    checks: list[GateCheckResult]
    report: AnswerEvalReport | None = None


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def judge_check(check: GateCheck, report: AnswerEvalReport) -> GateCheckResult:
    name = check.metric
    value = getattr(report.candidate, name)
    base = getattr(report.baseline, name) if report.baseline is not None else None
    if value is None:
        return GateCheckResult(metric=name, baseline=base, outcome=Outcome.ERROR, message="not in the report")
    value = float(value)
    base = None if base is None else float(base)
    if check.margin is not None:
        if base is None:
            return GateCheckResult(
                metric=name,
                candidate=value,
                outcome=Outcome.ERROR,
                message="no baseline figure for the margin",
            )
        if name in LOWER_IS_BETTER and value > base + check.margin + _EPS:
            return GateCheckResult(
                metric=name,
                candidate=value,
                baseline=base,
                outcome=Outcome.FAILED,
                message=f"{_fmt(value)} > stable {_fmt(base)} + {_fmt(check.margin)}",
            )
        if name not in LOWER_IS_BETTER and value < base - check.margin - _EPS:
            return GateCheckResult(
                metric=name,
                candidate=value,
                baseline=base,
                outcome=Outcome.FAILED,
                message=f"{_fmt(value)} < stable {_fmt(base)} - {_fmt(check.margin)}",
            )
    if check.min is not None and value < check.min - _EPS:
        return GateCheckResult(
            metric=name,
            candidate=value,
            baseline=base,
            outcome=Outcome.FAILED,
            message=f"{_fmt(value)} < min {_fmt(check.min)}",
        )
    if check.max is not None and value > check.max + _EPS:
        return GateCheckResult(
            metric=name,
            candidate=value,
            baseline=base,
            outcome=Outcome.FAILED,
            message=f"{_fmt(value)} > max {_fmt(check.max)}",
        )
    parts = []
    if check.margin is not None and base is not None:
        sign = "+" if name in LOWER_IS_BETTER else "-"
        parts.append(f"stable {_fmt(base)} {sign} {_fmt(check.margin)}")
    if check.min is not None:
        parts.append(f"min {_fmt(check.min)}")
    if check.max is not None:
        parts.append(f"max {_fmt(check.max)}")
    return GateCheckResult(
        metric=name,
        candidate=value,
        baseline=base,
        outcome=Outcome.SUCCESSFUL,
        message=f"{_fmt(value)} within {', '.join(parts)}",
    )


def judge_report(spec: Evaluation, report: AnswerEvalReport) -> GateVerdict:
    """Every check against one report; a report too small to trust is an Error, not a pass."""
    checks = [judge_check(c, report) for c in spec.checks]
    sizes = [("canary", report.candidate.rows)] + (
        [("stable", report.baseline.rows)] if report.baseline is not None else []
    )
    small = [f"{who} answered {rows} rows" for who, rows in sizes if rows < spec.min_rows]
    if small:
        return GateVerdict(Outcome.ERROR, f"{'; '.join(small)} < minRows {spec.min_rows}", checks, report)
    failed = [c for c in checks if c.outcome == Outcome.FAILED]
    comparison = report.comparison
    if spec.fail_on_significantly_worse and comparison is not None and comparison.verdict == "worse":
        failed.append(
            GateCheckResult(
                metric="comparison",
                candidate=comparison.delta,
                outcome=Outcome.FAILED,
                message=f"answer accuracy significantly worse than stable ({comparison.test}, "
                f"delta {_fmt(comparison.delta)}, p {_fmt(comparison.p_value)})",
            )
        )
        checks = [*checks, failed[-1]]
    if failed:
        return GateVerdict(
            Outcome.FAILED, "; ".join(f"{c.metric} {c.message}" for c in failed), checks, report
        )
    errors = [c for c in checks if c.outcome == Outcome.ERROR]
    if errors:
        return GateVerdict(
            Outcome.ERROR, "; ".join(f"{c.metric} {c.message}" for c in errors), checks, report
        )
    return GateVerdict(Outcome.SUCCESSFUL, f"all {len(checks)} checks passed", checks, report)


def judge_job(
    spec: Evaluation, record: EvaluationStatus, job: JobObservation | None, now: datetime
) -> GateVerdict:
    """The gate's verdict from the Job the status names, or None (running) while there is none yet."""
    overdue = (now - record.started_at).total_seconds() > spec.timeout_seconds + TIMEOUT_GRACE
    if job is None or job.state in ("Absent", "Running"):
        if overdue:
            seen = "never appeared" if job is None or job.state == "Absent" else "is still running"
            return GateVerdict(Outcome.ERROR, f"timed out after {spec.timeout}: Job {record.job} {seen}", [])
        waiting = f" ({job.message})" if job is not None and job.message else ""
        return GateVerdict(None, f"Job {record.job} running{waiting}", [])
    if job.state == "Failed":
        if job.reason == "DeadlineExceeded":
            return GateVerdict(
                Outcome.ERROR, f"timed out after {spec.timeout}: Job {job.name} was stopped", []
            )
        detail = ": ".join(p for p in (job.reason, job.message) if p)
        return GateVerdict(Outcome.ERROR, f"Job {job.name} failed" + (f": {detail}" if detail else ""), [])
    if job.report is None:
        return GateVerdict(
            Outcome.ERROR,
            f"Job {job.name} succeeded without a usable report: {job.report_error or 'none'}",
            [],
        )
    return judge_report(spec, job.report)
