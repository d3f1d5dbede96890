"""Every rendered object is valid against the Kubernetes API schemas of a pinned version in
strict mode (unknown fields are errors); custom kinds get their own checks elsewhere."""

from __future__ import annotations

import pytest
from k8s_tooling import CHART, CI_VALUES, CUSTOM_KINDS, REPO, k8s_validate, load_yaml, pod_as_object, render

CASES = {
    "defaults": ((), ()),
    **{p.stem: ((p,), ()) for p in CI_VALUES},
    "kind": ((REPO / "deploy" / "kind" / "values.yaml",), ()),
    "operator-off-redis-off": (
        (),
        ("operator.enabled=false", "redis.mode=disabled", "networkPolicy.enabled=false"),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_rendered_objects_are_valid_kubernetes(case: str):
    values, sets = CASES[case]
    docs = render(values=values, sets=sets)
    errors = [e for e in map(k8s_validate, docs) if e]
    assert not errors, "\n".join(errors)
    # Every custom kind is one the tests know, and the built-in ones really were checked.
    assert {d["kind"] for d in docs if k8s_validate(d) is None} >= {"Deployment", "Service", "ConfigMap"}
    assert (
        not {d["kind"] for d in docs}
        - CUSTOM_KINDS
        - {
            "Deployment",
            "StatefulSet",
            "Service",
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "PersistentVolumeClaim",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "HorizontalPodAutoscaler",
            "Job",
        }
    )


def test_rayservice_pod_templates_are_valid_pods():
    (rs,) = [
        d for d in render(values=(CHART / "ci" / "rayservice-values.yaml",)) if d["kind"] == "RayService"
    ]
    cluster = rs["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    errors = [k8s_validate(pod_as_object(t, f"ray-{i}")) for i, t in enumerate(templates)]
    assert errors == [None] * len(templates)


def test_validator_rejects_what_the_api_server_would():
    # The check above is only worth something if an unknown field or a wrong type fails it.
    (dep,) = [
        d for d in render() if d["kind"] == "Deployment" and d["metadata"]["name"] == "finserve-serving-cpu"
    ]
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    assert "readinessProbes" in k8s_validate(dep)
    (svc,) = [d for d in render() if d["kind"] == "Service" and d["metadata"]["name"] == "finserve"]
    svc["spec"]["ports"][0]["port"] = "http"
    assert k8s_validate(svc)


def test_crd_is_a_valid_custom_resource_definition():
    for crd in (CHART / "crds").glob("*.yaml"):
        assert k8s_validate(load_yaml(crd)) is None, crd
