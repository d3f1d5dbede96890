"""The kustomize base is the chart rendered (no drift), and every overlay builds with kubectl's
kustomize into objects valid for the pinned Kubernetes version."""

from __future__ import annotations

import pytest
import yaml
from k8s_tooling import REPO, container, k8s_validate, render_text, run, tool

KUSTOMIZE = REPO / "manifests" / "kustomize"
BASE = KUSTOMIZE / "base"
OVERLAYS = sorted(p for p in (KUSTOMIZE / "overlays").iterdir() if p.is_dir())


def build(path) -> list[dict]:
    out = run([tool("kubectl"), "kustomize", str(path)])
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_base_is_the_chart_rendered_with_its_values():
    committed = (BASE / "finserve.yaml").read_text()
    header, body = committed.split("\n", 2)[:2], committed.split("\n", 2)[2]
    assert header[0].startswith("# Generated from charts/finserve")
    assert body == render_text(values=(BASE / "values.yaml",), auth=()), (
        "manifests/kustomize/base/finserve.yaml is stale: regenerate it (manifests/kustomize/README.md)"
    )


def test_overlays_exist():
    assert {p.name for p in OVERLAYS} == {"kind", "gpu"}


@pytest.mark.parametrize("path", [BASE, *OVERLAYS], ids=lambda p: p.name)
def test_kustomization_builds_valid_objects_in_one_namespace(path):
    docs = build(path)
    errors = [e for e in map(k8s_validate, docs) if e]
    assert not errors, "\n".join(errors)
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] not in cluster_scoped} == {"finserve"}
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ClusterRole", "NetworkPolicy"} <= kinds
    assert "Secret" not in kinds  # no generated credentials in plain manifests


def test_rbac_subject_is_the_service_account_the_base_creates():
    docs = build(BASE)
    (sa,) = [
        d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == "finserve-operator"
    ]
    for binding in (d for d in docs if d["kind"] == "ClusterRoleBinding"):
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": sa["metadata"]["name"],
                "namespace": sa["metadata"]["namespace"],
            }
        ]


def _serving(docs):
    (dep,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "finserve-serving-main"
    ]
    return dep["spec"]["template"]["spec"]


def test_kind_overlay_exposes_the_gateway_on_the_mapped_node_port():
    docs = build(KUSTOMIZE / "overlays" / "kind")
    (svc,) = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "finserve"]
    cluster = yaml.safe_load((REPO / "deploy" / "kind" / "cluster.yaml").read_text())
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["ports"][0]["nodePort"] == cluster["nodes"][0]["extraPortMappings"][0]["containerPort"]
    assert container(_serving(docs), "serving")["resources"]["requests"]["cpu"] == "500m"


def test_gpu_overlay_puts_the_pool_on_gpus():
    docs = build(KUSTOMIZE / "overlays" / "gpu")
    pod = _serving(docs)
    c = container(pod, "serving")
    assert c["image"] == "finserve-serving-gpu:0.1.0"
    assert container(pod, "model")["image"] == "finserve-serving-gpu:0.1.0"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "finserve-serving-main"]
    assert yaml.safe_load(cm["data"]["serving.yaml"]) == {
        "generator": {"engine": "vllm"},
        "deployments": {"generator": {"num_gpus": 1}},
    }
