"""PromQL for canary analysis: the built-in metric templates and the template renderer.

Templates use ``{{ name }}`` placeholders (PromQL itself uses single braces). The values come from
the rollout: ``model``, ``adapter``, ``version`` (of the canary), ``namespace``, ``rollout`` and
``interval`` (the analysis interval as a PromQL range such as ``60s``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from finserve.contracts import metrics as m

PLACEHOLDERS = frozenset({"model", "adapter", "version", "namespace", "rollout", "interval"})
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

_SEL = 'model="{{ model }}",adapter="{{ adapter }}",version="{{ version }}"'
_W = "[{{ interval }}]"


def _new_events(series: str) -> str:
    """Events counted in the window, including on series created inside it.

    ``increase()`` cannot see the first increment of a series that did not exist before the window
    (a labelled counter appears at 1), and one PII finding matters: series older than the window
    count their increase, newer ones their whole value.
    """
    return (
        f"(sum(increase({series}{_W}) and {series} offset {{{{ interval }}}}) or vector(0))"
        f" + (sum({series} unless {series} offset {{{{ interval }}}}) or vector(0))"
    )


@dataclass(frozen=True)
class BuiltinMetric:
    """A metric check that needs no PromQL from the user."""

    query: str
    min: float | None
    max: float | None
    description: str


BUILTIN_METRICS: dict[str, BuiltinMetric] = {
    "error-rate": BuiltinMetric(
        query=(
            f'(sum(rate({m.REQUESTS_TOTAL}{{{_SEL},code=~"5.."}}{_W})) or vector(0))'
            f" / sum(rate({m.REQUESTS_TOTAL}{{{_SEL}}}{_W}))"
        ),
        min=None,
        max=0.05,
        description="Share of the canary's requests answered with a 5xx status.",
    ),
    "latency-p95": BuiltinMetric(
        query=(f"histogram_quantile(0.95, sum by (le) (rate({m.REQUEST_DURATION}_bucket{{{_SEL}}}{_W})))"),
        min=None,
        max=5.0,
        description="95th percentile of the canary's end-to-end latency, in seconds.",
    ),
    "pii-output": BuiltinMetric(
        query=_new_events(f'{m.PII_FINDINGS_TOTAL}{{{_SEL},stage="output"}}'),
        min=None,
        max=0.0,
        description="PII entities found in the canary's outputs during the interval (any is a failure).",
    ),
    "intent-quality": BuiltinMetric(
        query=(
            f'(sum(rate({m.INTENT_AGREEMENT_TOTAL}{{{_SEL},agree="true"}}{_W})) or vector(0))'
            f" / sum(rate({m.INTENT_AGREEMENT_TOTAL}{{{_SEL}}}{_W}))"
        ),
        min=0.9,
        max=None,
        description="Share of the canary's answers whose own intent opinion (its head, before any vote) "
        "agrees with the retrieval vote.",
    ),
    "ttft-p95": BuiltinMetric(
        query=(f"histogram_quantile(0.95, sum by (le) (rate({m.TIME_TO_FIRST_TOKEN}_bucket{{{_SEL}}}{_W})))"),
        min=None,
        max=2.0,
        description="95th percentile of the canary's time to first token (arrival to first generated token), "
        "in seconds. Opt-in: list it by name.",
    ),
}

DEFAULT_METRICS = ("error-rate", "latency-p95", "pii-output", "intent-quality")
"""The checks a rollout runs when it lists none; the other built-ins are opt-in by name."""

REQUESTS_QUERY = f"sum(increase({m.REQUESTS_TOTAL}{{{_SEL}}}{_W}))"
"""Requests the canary served during the interval: the sample-size guard (minRequests)."""

SHADOW_METRICS: dict[str, BuiltinMetric] = {
    "shadow-similarity": BuiltinMetric(
        query=(
            f"sum(rate({m.SHADOW_SIMILARITY}_sum{{{_SEL}}}{_W}))"
            f" / sum(rate({m.SHADOW_SIMILARITY}_count{{{_SEL}}}{_W}))"
        ),
        min=0.8,
        max=None,
        description="Mean cosine similarity (MiniLM) of the canary's shadow answers to the stable answers "
        "of the same requests.",
    ),
    "shadow-intent-agreement": BuiltinMetric(
        query=(
            f'(sum(rate({m.SHADOW_INTENT_AGREEMENT_TOTAL}{{{_SEL},agree="true"}}{_W})) or vector(0))'
            f" / sum(rate({m.SHADOW_INTENT_AGREEMENT_TOTAL}{{{_SEL}}}{_W}))"
        ),
        min=0.9,
        max=None,
        description="Share of shadowed requests where the canary served the same intent as stable did.",
    ),
    "shadow-pii": BuiltinMetric(
        query=_new_events(f"{m.SHADOW_PII_TOTAL}{{{_SEL}}}"),
        min=None,
        max=0.0,
        description="PII entities the output guard found in the canary's shadow answers (any is a failure).",
    ),
    "shadow-failures": BuiltinMetric(
        query=(
            f'(sum(rate({m.SHADOW_REQUESTS_TOTAL}{{{_SEL},outcome="failed"}}{_W})) or vector(0))'
            f' / sum(rate({m.SHADOW_REQUESTS_TOTAL}{{{_SEL},outcome=~"compared|failed"}}{_W}))'
        ),
        min=None,
        max=0.05,
        description="Share of shadow requests the canary failed to answer (dropped ones excluded).",
    ),
}
"""Built-ins for the shadow phase (spec.strategy.shadow.metrics): they read the canary's answers to
mirrored stable requests, so they have data only while shadow traffic flows."""

SHADOW_SAMPLES_QUERY = f'sum(increase({m.SHADOW_REQUESTS_TOTAL}{{{_SEL},outcome="compared"}}{_W}))'
"""Shadow pairs compared during the interval: the shadow phase's sample-size guard (minSamples)."""

ALL_BUILTINS: dict[str, BuiltinMetric] = {**BUILTIN_METRICS, **SHADOW_METRICS}

GPU_UTILIZATION_QUERY = 'avg(DCGM_FI_DEV_GPU_UTIL{namespace="{{ namespace }}",pod=~"{{ workload }}-.*"})'
"""DCGM exporter's GPU utilization (percent) averaged over the pool's pods."""

QUEUE_DEPTH_QUERY = f'avg({m.GENERATOR_QUEUE_DEPTH}{{pool="{{{{ pool }}}}"}})'
"""Requests waiting in or running on a generator replica, averaged over the pool's replicas."""

POOL_PLACEHOLDERS = frozenset({"namespace", "workload", "pool"})


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def check_template(template: str, allowed: frozenset[str] = PLACEHOLDERS) -> str:
    """Return the template unchanged, or raise ValueError naming unknown placeholders."""
    unknown = placeholders(template) - allowed
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)} in query; allowed: {sorted(allowed)}")
    return template


def _escape(value: str) -> str:
    # Values land inside PromQL double-quoted strings.
    return value.replace("\\", "\\\\").replace('"', '\\"')


def render(template: str, values: dict[str, str]) -> str:
    """Fill every ``{{ name }}``; a placeholder without a value is a ValueError."""

    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise ValueError(f"no value for placeholder {key!r}")
        return _escape(values[key])

    return _PLACEHOLDER.sub(sub, template)
