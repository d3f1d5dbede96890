"""The ModelRollout CRD: its openAPIV3Schema accepts the samples and rejects invalid resources
(checked with jsonschema; the CEL rules need an API server, and the typed models enforce the same
rules, see test_spec.py), and it says exactly what the typed models say."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from mro_testkit import rollout_manifest
from pydantic import BaseModel, TypeAdapter

from finserve.operator import api
from finserve.operator.spec import ModelRolloutSpec
from finserve.operator.status import RolloutStatus

EXAMPLES = Path(api.__file__).parent / "examples"

FULL = rollout_manifest(
    strategy={
        "steps": [10, 50, 100],
        "stepInterval": "10m",
        "analysis": {
            "interval": "2m",
            "failureThreshold": 3,
            "successThreshold": 2,
            "minRequests": 100,
            "requestsQuery": "sum(increase(x[{{ interval }}]))",
            "metrics": [
                {"name": "error-rate", "max": 0.02},
                {
                    "name": "refusals",
                    "query": 'sum(rate(r{v="{{ version }}"}[1m]))',
                    "min": 0,
                    "max": 3,
                    "onNoData": "fail",
                },
            ],
        },
        "evaluation": {
            "goldenSet": {"pvc": {"claimName": "eval-data", "path": "banking/golden.csv"}},
            "beforeTraffic": True,
            "beforePromotion": False,
            "checks": [
                {"metric": "answer_accuracy", "margin": 0.005},
                {"metric": "groundedness", "min": 0.9},
            ],
            "failOnSignificantlyWorse": True,
            "minRows": 100,
            "timeout": "45m",
            "onError": "retry",
            "retryLimit": 1,
        },
        "shadow": {
            "percent": 10,
            "duration": "15m",
            "minSamples": 200,
            "metrics": [{"name": "shadow-similarity", "min": 0.85}, {"name": "shadow-pii"}],
        },
    },
    autoscaling={
        "minReplicas": 1,
        "maxReplicas": 6,
        "targetGPUUtilization": 65,
        "targetQueueDepth": 8,
        "scaleUpStabilization": "30s",
        "scaleDownStabilization": "10m",
        "pool": "dedicated",
        "target": {
            "kind": "RayService",
            "name": "finserve",
            "serveDeployment": "Generator",
            "workerGroup": "gpu",
        },
        "canaryTarget": {"kind": "Deployment", "name": "generator-canary"},
    },
)


@pytest.fixture(scope="module")
def schema(crd) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def validate(schema: dict[str, Any], obj: dict[str, Any]) -> None:
    jsonschema.Draft4Validator(schema).validate(obj)


def test_names_match_the_api_module(crd):
    assert crd["metadata"]["name"] == f"{api.PLURAL}.{api.GROUP}"
    assert crd["spec"]["group"] == api.GROUP
    assert crd["spec"]["names"]["kind"] == api.KIND
    assert crd["spec"]["names"]["shortNames"] == [api.SHORT_NAME]
    version = crd["spec"]["versions"][0]
    assert version["name"] == api.VERSION and version["subresources"] == {"status": {}}


def test_printer_columns(crd):
    columns = {c["name"]: c["jsonPath"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ".status.phase",
        "Step": ".status.currentStepIndex",
        "Weight": ".status.canaryWeight",
        "Stable": ".status.stable",
        "Canary": ".status.canary",
        "Age": ".metadata.creationTimestamp",
    }


@pytest.mark.parametrize(
    "sample",
    [rollout_manifest(), FULL, yaml.safe_load((EXAMPLES / "rollout.yaml").read_text())],
    ids=["minimal", "every field", "example"],
)
def test_samples_are_valid_for_the_schema_and_the_models(schema, sample):
    validate(schema, sample)
    ModelRolloutSpec.model_validate(sample["spec"])


def test_a_written_status_is_valid(schema):
    from mro_testkit import T0, make_spec

    from finserve.operator.core.decide import decide
    from finserve.operator.core.observations import Observations
    from finserve.operator.objects import rollout_status_patch

    status = decide(make_spec(), RolloutStatus(), Observations(generation=1), T0).status
    body = {k: v for k, v in rollout_status_patch(status).items() if v is not None}
    validate(schema, {**rollout_manifest(), "status": body})


def _stored(patch: Any) -> Any:
    """What the API server keeps of a merge patch: null deletes an object's key; a list is taken
    whole, so a null inside one stays (and must pass the schema)."""
    if isinstance(patch, dict):
        return {k: _stored(v) for k, v in patch.items() if v is not None}
    if isinstance(patch, list):
        return list(patch)
    return patch


def test_a_written_evaluation_status_is_valid(schema):
    from mro_testkit import at, evaluating, gated, make_spec, readings, report, running

    from finserve.operator.core.decide import decide
    from finserve.operator.core.observations import JobObservation, Observations
    from finserve.operator.objects import rollout_status_patch

    checks = [{"metric": "answer_accuracy", "margin": 0.005}, {"metric": "intent_accuracy", "min": 0.8}]
    spec = make_spec({"evaluation": gated(checks=checks), "shadow": {"percent": 5}})
    status = evaluating(
        spec,
        last_analysis=decide(  # a check with a metric without data
            spec, running(spec), Observations(analysis=readings(latency_p95=None)), at(60)
        ).status.last_analysis,
    )
    done = JobObservation(
        name=status.evaluation.job, state="Succeeded", report=report()
    )  # no intent_accuracy
    decided = decide(spec, status, Observations(rollout="bank", evaluation=done), at(60)).status
    assert decided.phase == "Failed" and decided.evaluation.checks[1].candidate is None  # an Error
    body = _stored(rollout_status_patch(decided))
    validate(schema, {**rollout_manifest(), "spec": spec.to_wire(), "status": body})
    status = evaluating(spec)
    done = JobObservation(
        name=status.evaluation.job,
        state="Succeeded",
        report=report(baseline={"intent_accuracy": 0.9}, intent_accuracy=0.91),
    )
    decided = decide(spec, status, Observations(rollout="bank", evaluation=done), at(60)).status
    assert decided.evaluation.report is not None and decided.phase == "Shadowing"
    body = _stored(rollout_status_patch(decided))
    validate(schema, {**rollout_manifest(), "spec": spec.to_wire(), "status": body})
    assert body["evaluation"]["report"]["candidate"]["answer_accuracy"] == 0.84  # as the Job wrote it
    assert RolloutStatus.from_wire(body) == decided  # a restarted operator reads back what it wrote


def test_a_new_evaluation_attempt_clears_the_last_outcome_in_the_merge_patch():
    from mro_testkit import evaluating, gated, make_spec

    from finserve.operator.objects import rollout_status_patch

    patch = rollout_status_patch(evaluating(make_spec({"evaluation": gated()}), attempt=2))
    assert patch["evaluation"]["outcome"] is None and patch["evaluation"]["finishedAt"] is None


def _set(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    keys = path.split(".")
    target = obj
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    if value is ...:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return obj


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.model", ...),
        ("spec.canary.version", "latest"),
        ("spec.model", "Bad Name"),
        ("spec.strategy.steps", [0, 100]),
        ("spec.strategy.steps", [5, 101]),
        ("spec.strategy.steps", []),
        ("spec.strategy.stepInterval", "5 minutes"),
        ("spec.strategy.analysis.failureThreshold", 0),
        ("spec.strategy.analysis.minRequests", -1),
        ("spec.strategy.analysis.metrics", [{"name": "error-rate", "onNoData": "ignore"}]),
        ("spec.strategy.analysis.metrics", [{"query": "sum(x)", "max": 1}]),
        ("spec.autoscaling", {"target": {"kind": "Deployment", "name": "g"}}),
        ("spec.autoscaling", {"maxReplicas": 2, "target": {"kind": "StatefulSet", "name": "g"}}),
        (
            "spec.autoscaling",
            {"maxReplicas": 2, "targetGPUUtilization": 0, "target": {"kind": "Deployment", "name": "g"}},
        ),
        (
            "spec.autoscaling",
            {"maxReplicas": 2, "pool": "separate", "target": {"kind": "Deployment", "name": "g"}},
        ),
        ("status.phase", "Done"),
        ("spec.strategy.evaluation", {"checks": [{"metric": "groundedness", "min": 0.9}]}),
        ("spec.strategy.evaluation", {"goldenSet": {}, "checks": [{"metric": "bleu", "min": 1}]}),
        ("spec.strategy.evaluation", {"goldenSet": {}, "onError": "ignore"}),
        ("spec.strategy.evaluation", {"goldenSet": {"pvc": {"claimName": "d", "path": "/abs.csv"}}}),
        ("spec.strategy.shadow", {"percent": 0}),
        ("spec.strategy.shadow", {"duration": "5m"}),
        ("status.evaluation", {"stage": "Later"}),
    ],
    ids=[
        "no model",
        "version not semver",
        "model not a DNS label",
        "zero weight",
        "weight over 100",
        "no steps",
        "bad duration",
        "zero failure threshold",
        "negative minRequests",
        "bad onNoData",
        "metric without name",
        "autoscaling without maxReplicas",
        "unsupported kind",
        "zero GPU target",
        "unknown pool",
        "unknown phase",
        "evaluation without golden set",
        "unknown gate metric",
        "bad onError",
        "absolute pvc path",
        "zero shadow percent",
        "shadow without percent",
        "unknown evaluation stage",
    ],
)
def test_invalid_resources_are_rejected(schema, path, value):
    with pytest.raises(jsonschema.ValidationError):
        validate(schema, _set(rollout_manifest(), path, value))


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model inside X, X | None or list[X]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, types.UnionType, typing.Union):
        return next((m for a in typing.get_args(annotation) if (m := _model_of(a)) is not None), None)
    return None


def _agree(schema: dict[str, Any], model: type[BaseModel], path: str, defaults: bool = True) -> None:
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    props = schema["properties"]
    assert set(props) == set(fields), f"{path}: CRD {sorted(set(props) ^ set(fields))} differ from the model"
    for alias, field in fields.items():
        prop = props[alias]
        sub = _model_of(field.annotation)
        if prop.get("x-kubernetes-preserve-unknown-fields") and "properties" not in prop:
            sub = None  # a contracts/ model kept as written (status.evaluation.report)
        if sub is not None and sub is not model:
            _agree(prop["items"] if prop.get("type") == "array" else prop, sub, f"{path}.{alias}", defaults)
        if not defaults:
            continue
        assert (alias in schema.get("required", [])) == field.is_required(), (
            f"{path}.{alias}: required differs"
        )
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        if default is not None:
            assert "default" in prop, f"{path}.{alias}: the model has a default the CRD lacks"
        if "default" in prop:
            assert TypeAdapter(field.annotation).validate_python(prop["default"]) == default, (
                f"{path}.{alias}"
            )


def test_the_crd_spec_says_what_the_models_say(schema):
    _agree(schema["properties"]["spec"], ModelRolloutSpec, "spec")


def test_the_crd_status_says_what_the_models_say(schema):
    _agree(schema["properties"]["status"], RolloutStatus, "status", defaults=False)  # the operator writes it
