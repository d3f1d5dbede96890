"""manifests/rbac/ grants the operator what finserve.operator.rbac says, the same as the chart."""

from __future__ import annotations

import yaml
from k8s_tooling import REPO, k8s_validate, render

from finserve.operator.rbac import CLUSTER_RULES, NAMESPACED_RULES

RBAC = REPO / "manifests" / "rbac"


def load() -> dict[tuple[str, str], dict]:
    docs = [
        d
        for p in sorted(RBAC.glob("*.yaml"))
        if p.name != "kustomization.yaml"
        for d in yaml.safe_load_all(p.read_text())
        if d
    ]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_plain_rbac_rules_are_the_required_rules():
    docs = load()
    assert docs[("ClusterRole", "finserve-operator-cluster")]["rules"] == CLUSTER_RULES
    assert docs[("ClusterRole", "finserve-operator")]["rules"] == NAMESPACED_RULES
    assert all(k8s_validate(d) is None for d in docs.values())


def test_plain_rbac_matches_the_chart():
    chart = {
        (d["kind"], d["metadata"]["name"]): d
        for d in render()
        if d["kind"] in {"ClusterRole", "ClusterRoleBinding"}
    }
    plain = load()
    assert chart.keys() == plain.keys()  # release `finserve` names them alike
    for key, doc in plain.items():
        for field in ("rules", "roleRef", "subjects"):
            assert doc.get(field) == chart[key].get(field), (key, field)
