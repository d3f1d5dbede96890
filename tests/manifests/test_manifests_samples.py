"""Every numbered sample is a valid ModelRollout: against the CRD's openAPIV3Schema (strict: an
unknown field fails as `kubectl apply --validate=strict` would), against the operator's own spec
model, and its autoscaling targets exist in the chart rendered with the sample's values."""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import jsonschema
import pytest
from k8s_tooling import REPO, find, load_yaml, render

from finserve.operator.api import API_VERSION, CRD_PATH, KIND
from finserve.operator.spec import ModelRolloutSpec

SAMPLES = REPO / "manifests" / "samples"
SAMPLE_DIRS = sorted(p for p in SAMPLES.iterdir() if p.is_dir())


def strict(schema: dict) -> dict:
    """The CRD schema with unknown fields rejected wherever the API server would prune them."""
    schema = copy.deepcopy(schema)

    def close(node: dict, is_metadata: bool = False) -> None:
        if (
            node.get("type") == "object"
            and "properties" in node
            and not is_metadata
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for key, sub in node.get("properties", {}).items():
            close(sub, is_metadata=key == "metadata" and node is schema)
        if isinstance(node.get("items"), dict):
            close(node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            close(node["additionalProperties"])

    close(schema)
    return schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    crd = load_yaml(CRD_PATH)
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    # Draft 4: the CRD uses OpenAPI 3.0's boolean exclusiveMinimum.
    return jsonschema.Draft4Validator(strict(version["schema"]["openAPIV3Schema"]))


def test_samples_are_numbered_folders_with_a_readme():
    assert len(SAMPLE_DIRS) >= 4
    assert [p.name[:3] for p in SAMPLE_DIRS] == [f"{i:02d}-" for i in range(1, len(SAMPLE_DIRS) + 1)]
    assert {"01-minimal", "02-custom-analysis", "03-autoscaling", "04-dedicated-canary-pool"} <= {
        p.name for p in SAMPLE_DIRS
    }
    index = (SAMPLES / "README.md").read_text()
    for sample in SAMPLE_DIRS:
        assert (sample / "README.md").read_text().startswith(f"# {sample.name[:2]} ")
        assert (sample / "modelrollout.yaml").is_file()
        assert f"]({sample.name}/)" in index


@pytest.mark.parametrize("sample", SAMPLE_DIRS, ids=lambda p: p.name)
def test_sample_is_valid_against_the_crd(sample: Path, validator: jsonschema.Draft4Validator):
    doc = load_yaml(sample / "modelrollout.yaml")
    assert (doc["apiVersion"], doc["kind"]) == (API_VERSION, KIND)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("sample", SAMPLE_DIRS, ids=lambda p: p.name)
def test_sample_is_valid_for_the_operator(sample: Path):
    # The operator's model also enforces what the CRD says in CEL (ascending steps, targets...).
    ModelRolloutSpec.model_validate(load_yaml(sample / "modelrollout.yaml")["spec"])


def test_strict_crd_validation_rejects_a_typo(validator: jsonschema.Draft4Validator):
    doc = load_yaml(SAMPLE_DIRS[0] / "modelrollout.yaml")
    doc["spec"]["strategy"] = {"stepz": [5, 100]}
    assert any("stepz" in e.message for e in validator.iter_errors(doc))
    doc["spec"]["strategy"] = {"steps": [5, 250]}
    assert list(validator.iter_errors(doc))


def serve_deployment_names() -> set[str]:
    """Names of the Ray Serve deployments finserve.serving.app builds (serve.deployment(name=...))."""
    tree = ast.parse((REPO / "serving" / "app.py").read_text())
    return {
        kw.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "deployment"
        for kw in node.keywords
        if kw.arg == "name" and isinstance(kw.value, ast.Constant)
    }


def targets(spec: dict) -> list[dict]:
    scaling = spec.get("autoscaling") or {}
    return [t for t in (scaling.get("target"), scaling.get("canaryTarget")) if t]


@pytest.mark.parametrize(
    "sample",
    [p for p in SAMPLE_DIRS if targets(load_yaml(p / "modelrollout.yaml")["spec"])],
    ids=lambda p: p.name,
)
def test_autoscaling_targets_exist_in_the_chart_with_the_sample_values(sample: Path):
    values = sample / "values.yaml"
    assert values.is_file(), "a sample that scales a pool says which chart values create it"
    docs = render(values=(values,))  # release `finserve`, as the READMEs install it
    for target in targets(load_yaml(sample / "modelrollout.yaml")["spec"]):
        (workload,) = find(docs, target["kind"], target["name"])
        if target["kind"] == "Deployment":
            assert workload["metadata"]["labels"]["app.kubernetes.io/component"] == "serving"
        if "workerGroup" in target:
            groups = [g["groupName"] for g in workload["spec"]["rayClusterConfig"]["workerGroupSpecs"]]
            assert target["workerGroup"] in groups
        if "serveDeployment" in target:
            assert target["serveDeployment"] in serve_deployment_names()


def test_serve_deployment_names_are_found():
    assert {"Gateway", "Generator"} <= serve_deployment_names()
