"""The operator's RBAC is exactly what it calls (finserve.operator.rbac.REQUIRED_RULES): the
cluster-scoped rules in a ClusterRole, the per-namespace ones cluster-wide or per namespace."""

from __future__ import annotations

from k8s_tooling import CHART, find, one, render

from finserve.operator.rbac import CLUSTER_RULES, NAMESPACED_RULES, REQUIRED_RULES, allows


def triples(rules):
    """(apiGroup, resource, verb) for every permission a rule list grants."""
    return {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def test_cluster_wide_operator_gets_exactly_the_required_rules():
    docs = render()
    cluster = one(docs, "ClusterRole", "finserve-operator-cluster")
    namespaced = one(docs, "ClusterRole", "finserve-operator")
    assert cluster["rules"] == CLUSTER_RULES
    assert namespaced["rules"] == NAMESPACED_RULES
    assert triples(cluster["rules"] + namespaced["rules"]) == triples(REQUIRED_RULES)
    assert not find(docs, "Role")


def test_namespaced_operator_gets_a_role_per_namespace_and_no_cluster_wide_access():
    docs = render(values=(CHART / "ci" / "jobs-values.yaml",))
    assert one(docs, "ClusterRole")["rules"] == CLUSTER_RULES  # CRD discovery is cluster-scoped
    roles = find(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["finserve", "finserve-canary"]
    for role in roles:
        assert role["rules"] == NAMESPACED_RULES
    bindings = find(docs, "RoleBinding")
    assert sorted((b["metadata"]["namespace"], b["roleRef"]["kind"]) for b in bindings) == [
        ("finserve", "Role"),
        ("finserve-canary", "Role"),
    ]


def test_bindings_name_the_operator_service_account():
    for values in [(), (CHART / "ci" / "jobs-values.yaml",)]:
        docs = render(values=values)
        sa = one(docs, "ServiceAccount", "finserve-operator")
        pod = one(docs, "Deployment", "finserve-operator")["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == sa["metadata"]["name"]
        for binding in find(docs, "ClusterRoleBinding") + find(docs, "RoleBinding"):
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": "finserve-operator", "namespace": "finserve"}
            ]
            roles = find(docs, binding["roleRef"]["kind"], binding["roleRef"]["name"])
            assert roles, f"{binding['metadata']['name']} binds a role the chart does not render"


def test_no_wildcards_and_nothing_beyond_what_the_operator_calls():
    docs = render()
    granted = triples(sum((r["rules"] for r in find(docs, "ClusterRole")), []))
    assert not any("*" in t for t in granted)
    # Spot checks of what least privilege means here.
    rules = sum((r["rules"] for r in find(docs, "ClusterRole")), [])
    assert allows(rules, "apps", "deployments/scale", "patch")
    assert not allows(rules, "apps", "deployments", "patch")
    assert not allows(rules, "", "secrets", "get")
    assert not allows(rules, "", "configmaps", "delete")


def test_rbac_can_be_left_to_manifests():
    docs = render(sets=("operator.rbac.create=false",))
    assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")
    assert one(docs, "ServiceAccount", "finserve-operator")
