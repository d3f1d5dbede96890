"""The typed ModelRollout spec: defaults, and every rule that rejects a spec."""

from __future__ import annotations

import pytest
from mro_testkit import rollout_manifest
from pydantic import ValidationError

from finserve.operator.queries import BUILTIN_METRICS
from finserve.operator.spec import ModelRolloutSpec


def parse(**fields):
    return ModelRolloutSpec.model_validate(rollout_manifest(**fields)["spec"])


def test_a_minimal_rollout_needs_no_promql():
    spec = parse()
    assert spec.strategy.steps == [5, 25, 50, 100]
    # Every built-in but the opt-in ttft-p95 (a CPU engine's first token can legitimately take seconds).
    assert [m.name for m in spec.strategy.analysis.metrics] == [n for n in BUILTIN_METRICS if n != "ttft-p95"]
    assert all(m.query is None for m in spec.strategy.analysis.metrics)
    assert spec.strategy.analysis.metrics[0].resolved_query() == BUILTIN_METRICS["error-rate"].query
    assert spec.strategy.analysis.metrics[0].bounds() == (None, 0.05)


def test_wire_names_round_trip():
    spec = parse(
        autoscaling={
            "maxReplicas": 3,
            "targetGPUUtilization": 55,
            "target": {"kind": "Deployment", "name": "gen"},
        }
    )
    wire = spec.to_wire()
    assert wire["autoscaling"]["targetGPUUtilization"] == 55
    assert wire["baseModel"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert ModelRolloutSpec.model_validate(wire) == spec


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"canary": {"adapter": "banking77", "version": "1.0.0"}}, "is the stable version already"),
        ({"strategy": {"evaluation": {"goldenSet": {}}}}, "exactly one of configMap, pvc, registry"),
        (
            {
                "strategy": {
                    "evaluation": {
                        "goldenSet": {
                            **{"configMap": {"name": "g", "key": "golden.csv"}},
                            "pvc": {"claimName": "d", "path": "g.csv"},
                        }
                    }
                }
            },
            "exactly one of configMap, pvc, registry",
        ),
        (
            {"strategy": {"evaluation": {"goldenSet": {"pvc": {"claimName": "d", "path": "../etc/x"}}}}},
            "inside the volume",
        ),
        (
            {
                "strategy": {
                    "evaluation": {
                        "goldenSet": {"configMap": {"name": "g", "key": "golden.csv"}},
                        "checks": [{"metric": "groundedness"}],
                    }
                }
            },
            "needs margin",
        ),
        (
            {
                "strategy": {
                    "evaluation": {
                        "goldenSet": {"configMap": {"name": "g", "key": "golden.csv"}},
                        "checks": [{"metric": "bleu", "min": 1}],
                    }
                }
            },
            "Input should be",
        ),
        (
            {
                "strategy": {
                    "evaluation": {
                        "goldenSet": {"configMap": {"name": "g", "key": "golden.csv"}},
                        "beforeTraffic": False,
                        "beforePromotion": False,
                    }
                }
            },
            "beforeTraffic and/or beforePromotion",
        ),
        ({"strategy": {"shadow": {"percent": 0}}}, "greater than 0"),
        (
            {"strategy": {"analysis": {"metrics": [{"name": "shadow-similarity"}]}}},
            "do not belong in the live analysis",
        ),
        (
            {"strategy": {"shadow": {"percent": 5, "metrics": [{"name": "error-rate"}]}}},
            "do not belong in the shadow phase",
        ),
        ({"canary": {"adapter": "banking77", "version": "v2"}}, "not a semantic version"),
        ({"strategy": {"steps": [5, 50, 25, 100]}}, "strictly ascending"),
        ({"strategy": {"steps": [5, 5, 100]}}, "strictly ascending"),
        ({"strategy": {"steps": [5, 50]}}, "must end at 100"),
        ({"strategy": {"steps": [0, 100]}}, "between 1 and 100"),
        ({"strategy": {"stepInterval": "five minutes"}}, "should match pattern"),
        ({"strategy": {"analysis": {"failureThreshold": 0}}}, "greater than or equal to 1"),
        ({"strategy": {"analysis": {"metrics": [{"name": "my-metric"}]}}}, "not a built-in"),
        ({"strategy": {"analysis": {"metrics": [{"name": "m", "query": "sum(x)"}]}}}, "needs min and/or max"),
        (
            {"strategy": {"analysis": {"metrics": [{"name": "m", "query": "sum(x)", "min": 2, "max": 1}]}}},
            "min 2.0 is above max 1.0",
        ),
        (
            {
                "strategy": {
                    "analysis": {"metrics": [{"name": "m", "query": 'x{a="{{ cluster }}"}', "max": 1}]}
                }
            },
            "unknown placeholder",
        ),
        ({"strategy": {"analysis": {"metrics": [{"name": "error-rate"}, {"name": "error-rate"}]}}}, "unique"),
        (
            {"strategy": {"analysis": {"metrics": [{"name": "error-rate", "onNoData": "ignore"}]}}},
            "inconclusive",
        ),
        (
            {
                "autoscaling": {
                    "maxReplicas": 2,
                    "minReplicas": 3,
                    "target": {"kind": "Deployment", "name": "g"},
                }
            },
            "above maxReplicas",
        ),
        (
            {
                "autoscaling": {
                    "maxReplicas": 2,
                    "pool": "dedicated",
                    "target": {"kind": "Deployment", "name": "g"},
                }
            },
            "needs a canaryTarget",
        ),
        (
            {"autoscaling": {"maxReplicas": 2, "target": {"kind": "RayService", "name": "g"}}},
            "needs serveDeployment and/or workerGroup",
        ),
        ({"autoscaling": {"maxReplicas": 2, "target": {"kind": "StatefulSet", "name": "g"}}}, "Deployment"),
        ({"model": "Finserve Banking"}, "should match pattern"),
        ({"rolloutSpeed": "fast"}, "Extra inputs are not permitted"),
    ],
    ids=[
        "canary equals stable",
        "golden set without source",
        "golden set with two sources",
        "golden set path leaves the volume",
        "gate check without bounds",
        "unknown gate metric",
        "evaluation at no stage",
        "zero shadow percent",
        "shadow built-in in the live analysis",
        "live built-in in the shadow phase",
        "bad version",
        "steps not ascending",
        "duplicate steps",
        "steps short of 100",
        "zero weight",
        "bad duration",
        "zero failure threshold",
        "unknown metric without query",
        "query without bounds",
        "min above max",
        "unknown placeholder",
        "duplicate metric",
        "bad onNoData",
        "min above max replicas",
        "dedicated without canary target",
        "ray without target fields",
        "unsupported workload",
        "model not a DNS label",
        "unknown field",
    ],
)
def test_invalid_specs_are_rejected(fields, error):
    with pytest.raises(ValidationError) as caught:
        parse(**fields)
    assert error in str(caught.value)


def test_gate_and_shadow_defaults():
    spec = parse(
        strategy={
            "evaluation": {
                "goldenSet": {"registry": {"adapter": "golden", "version": "1.0.0", "path": "golden.csv"}}
            },
            "shadow": {"percent": 5},
        }
    )
    evaluation, shadow = spec.strategy.evaluation, spec.strategy.shadow
    assert (evaluation.before_traffic, evaluation.before_promotion, evaluation.on_error) == (
        True,
        True,
        "fail",
    )
    assert [(c.metric, c.margin, c.max) for c in evaluation.checks] == [
        ("answer_accuracy", 0.005, None),
        ("groundedness", 0.01, None),
        ("pii_leaks", None, 0),
    ]
    assert [m.name for m in shadow.metrics] == ["shadow-similarity", "shadow-intent-agreement", "shadow-pii"]
    as_analysis = shadow.as_analysis(spec.strategy.analysis)
    assert as_analysis.min_requests == 100 and "shadow_requests_total" in as_analysis.requests_query
    assert as_analysis.interval == spec.strategy.analysis.interval
